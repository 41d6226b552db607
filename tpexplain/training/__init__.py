"""Training and evaluation: synthetic people (synth/), datasets, the training recipe, COCO keypoint evaluation."""
