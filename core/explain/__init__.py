"""Explanations: Grad-CAM / Grad-CAM++ heatmaps (`gradcam`) and how they and masks are drawn over the image
(`overlay`)."""
