"""Offline sample-quality evaluation on MNIST: a shipped digit classifier, the metrics, and an EMA of the generator.

``gankit.evaluation.evaluate.evaluate_generator(generator)`` scores a generator against the 10,000 real MNIST
test images with the Frechet distance, KID, precision/recall, the MNIST score and mode coverage, all computed on
the features of the small CNN in ``classifier`` (shipped as hash-checked safetensors); ``ema.GeneratorEMA`` keeps
the averaged generator worth scoring. Nothing is downloaded apart from MNIST itself.
"""
