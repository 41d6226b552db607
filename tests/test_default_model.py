"""The bundled default model does its job on people it has never seen (a guard against a broken or
untrained checkpoint; the full held-out measurement is in docs/model_zoo.md)."""
from tpexplain import load
from tpexplain.training import synth
from tpexplain.training.evaluate import evaluate


def test_default_model_finds_unseen_synthetic_people(tmp_path):
    ann = synth.make_dataset(tmp_path, 12, seed=31337)          # a seed never used in training
    m = evaluate(load("default"), ann, tmp_path / "images")
    # measured with the shipped checkpoint (iteration 7600): AP 0.524, PCK visible 0.86 (20 people); untrained: ~0
    assert m["num_people"] >= 15
    assert m["PCK_visible"] >= 0.7 and m["AP"] >= 0.3, m
