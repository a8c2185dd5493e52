"""Training: the two loops (`loops`: one for classifiers, one for segmenters) and each task's configuration of them."""
