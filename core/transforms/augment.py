"""Random training-time transforms (the `Rand*` side of the preprocessing steps): the chest classifiers' light
geometric and contrast jitter, and joint image + mask augmentation for segmenters and the MRI classifier."""

from __future__ import annotations

import numpy as np


def chest_augmenter(seed: int):
    import keras
    from keras import layers

    return keras.Sequential(
        [
            layers.RandomRotation(0.03, fill_mode="constant", seed=seed),
            layers.RandomZoom((-0.1, 0.1), fill_mode="constant", seed=seed + 1),
            layers.RandomTranslation(0.06, 0.06, fill_mode="constant", seed=seed + 2),
            layers.RandomContrast(0.2, seed=seed + 3),
        ],
        name="augment",
    )


def augmented_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int):
    """Shuffled training batches with light geometric and contrast augmentation, clipped to [0, 1]."""
    import tensorflow as tf

    augment = chest_augmenter(seed)
    return (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .map(
            lambda a, b: (tf.clip_by_value(augment(a, training=True), 0.0, 1.0), b), num_parallel_calls=tf.data.AUTOTUNE
        )
        .prefetch(tf.data.AUTOTUNE)
    )


def augment_pairs(seed: int):
    """Joint geometric augmentation of image + mask, contrast on the image, FLAIR-only input sometimes."""
    import keras
    import tensorflow as tf
    from keras import layers

    geometry = keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(0.04, fill_mode="constant", seed=seed + 1),
            layers.RandomZoom((-0.1, 0.1), fill_mode="constant", seed=seed + 2),
            layers.RandomTranslation(0.05, 0.05, fill_mode="constant", seed=seed + 3),
        ]
    )
    contrast = layers.RandomContrast(0.2, seed=seed + 4)

    def apply(images, masks):
        both = geometry(tf.concat([images, masks], axis=-1), training=True)
        images, masks = both[..., :3], tf.cast(both[..., 3:] > 0.5, tf.float32)
        images = tf.clip_by_value(contrast(images, training=True), 0.0, 1.0)
        flair_only = tf.random.uniform([tf.shape(images)[0], 1, 1, 1], seed=seed + 5) < 0.3
        images = tf.where(flair_only, tf.repeat(images[..., 1:2], 3, axis=-1), images)
        return images, masks

    return apply
