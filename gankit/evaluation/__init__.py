"""Offline sample-quality evaluation: feature extractors, the metrics computed on their features, and scoring.

``gankit.evaluation.evaluate_generator(generator)`` scores a generator against the 10,000 real MNIST test images with
the Frechet distance, KID, precision/recall, the MNIST score and mode coverage, all computed on the features of a
small CNN shipped as hash-checked safetensors. Against any other labelled dataset (``dataset=``, with
``dataset_options=``: Fashion-MNIST, a folder's held-out images) the same CNN design is trained once on that
dataset's training split and cached by its content, so the class score and coverage are of its classes. The
extractor is a choice (``FeatureExtractor``, ``register_features``): ``inception`` computes the standard FID's
features through torch-fidelity where it is installed. Nothing is downloaded apart from MNIST itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gankit import lazy_exports

if TYPE_CHECKING:
    from gankit.evaluation._classifier import FEATURE_DIM as FEATURE_DIM
    from gankit.evaluation._classifier import WEIGHTS_PATH as WEIGHTS_PATH
    from gankit.evaluation._classifier import WEIGHTS_SHA256 as WEIGHTS_SHA256
    from gankit.evaluation._classifier import DigitClassifier as DigitClassifier
    from gankit.evaluation._classifier import load_classifier as load_classifier
    from gankit.evaluation._evaluate import DEFAULT_FEATURES as DEFAULT_FEATURES
    from gankit.evaluation._evaluate import METRICS as METRICS
    from gankit.evaluation._evaluate import REFERENCE_DATASET as REFERENCE_DATASET
    from gankit.evaluation._evaluate import Reference as Reference
    from gankit.evaluation._evaluate import check_reference_fits as check_reference_fits
    from gankit.evaluation._evaluate import evaluate_generator as evaluate_generator
    from gankit.evaluation._evaluate import evaluate_images as evaluate_images
    from gankit.evaluation._evaluate import feature_extractor as feature_extractor
    from gankit.evaluation._evaluate import mnist_test_reference as mnist_test_reference
    from gankit.evaluation._evaluate import reference_from_images as reference_from_images
    from gankit.evaluation._evaluate import reference_metrics as reference_metrics
    from gankit.evaluation._features import INCEPTION_WEIGHTS_ENV as INCEPTION_WEIGHTS_ENV
    from gankit.evaluation._features import ClassifierFeatures as ClassifierFeatures
    from gankit.evaluation._features import FeatureExtractor as FeatureExtractor
    from gankit.evaluation._features import InceptionFeatures as InceptionFeatures
    from gankit.evaluation._features import ReferenceData as ReferenceData
    from gankit.evaluation._features import build_features as build_features
    from gankit.evaluation._features import feature_names as feature_names
    from gankit.evaluation._features import register_features as register_features
    from gankit.evaluation._metrics import class_histogram as class_histogram
    from gankit.evaluation._metrics import conditional_accuracy as conditional_accuracy
    from gankit.evaluation._metrics import feature_statistics as feature_statistics
    from gankit.evaluation._metrics import frechet_distance as frechet_distance
    from gankit.evaluation._metrics import frechet_distance_from_statistics as frechet_distance_from_statistics
    from gankit.evaluation._metrics import kernel_inception_distance as kernel_inception_distance
    from gankit.evaluation._metrics import knn_radii as knn_radii
    from gankit.evaluation._metrics import mnist_score as mnist_score
    from gankit.evaluation._metrics import mode_coverage as mode_coverage
    from gankit.evaluation._metrics import precision_recall as precision_recall
    from gankit.evaluation._trained import Recipe as Recipe
    from gankit.evaluation._trained import TrainedClassifier as TrainedClassifier
    from gankit.evaluation._trained import accuracy as accuracy
    from gankit.evaluation._trained import dataset_classifier as dataset_classifier
    from gankit.evaluation._trained import recipe_for as recipe_for
    from gankit.evaluation._trained import train_classifier as train_classifier

__all__, __getattr__, __dir__ = lazy_exports(__name__)
