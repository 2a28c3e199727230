"""Offline sample-quality evaluation on MNIST: a shipped digit classifier and the metrics computed on its features.

``gankit.evaluation.evaluate.evaluate_generator(generator)`` scores a generator against the 10,000 real MNIST
test images with the Frechet distance, KID, precision/recall, the MNIST score and mode coverage, all computed on
the features of the small CNN in ``classifier`` (shipped as hash-checked safetensors). Nothing is downloaded apart
from MNIST itself.
"""
