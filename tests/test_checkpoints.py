"""Checkpoints as found in the wild: training checkpoints with numpy metadata load, code-executing pickles do
nothing, safetensors are validated as strictly as the reference implementation, shards stay in their folder,
NaN weights are refused, and the "closest zoo model" hint gives exact counts."""
import json
import os
import random
import struct

import numpy as np
import pytest
import torch

import tpexplain as tpx
from conftest import KEYS
from tpexplain import zoo
from tpexplain.zoo.checkpoint import CheckpointError, load_into, read_state_dict
from tpexplain.zoo.safetensors import save_file


@pytest.fixture(scope="module")
def default_model():
    torch.manual_seed(0)
    return zoo.build("default").eval()


def trained_optimizer(model):
    """An Adam optimizer after one step, as a training run saves it (betas tuple, per-parameter state)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    model(torch.randn(1, 3, 256, 192)).mean().backward()
    opt.step()
    opt.zero_grad()
    model.eval()
    return opt.state_dict()


def assert_loaded(path, model):
    loaded = tpx.load("default", weights=path).model
    want = model.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in loaded.state_dict().items())


def assert_refused_for_safety(path, *words):
    with pytest.raises(CheckpointError) as info:
        read_state_dict(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    assert "contains a Python object of type" in message and "not loaded, for safety" in message, message
    assert "torch.save(model.state_dict()" in message and "weights_only" not in message, message
    for w in words:
        assert w in message, message


# ---------------------------------------------------------------------------------------------------
# Training checkpoints

def test_tokenpose_training_checkpoint_loads(default_model, tmp_path):
    # TokenPose's (HRNet's) train.py: DataParallel state dict, its unwrapped twin, `perf` from the COCO
    # evaluation (a numpy float64), the optimizer
    model = default_model
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 211, "model": "pose_tokenpose_b",
                "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
                "best_state_dict": model.state_dict(), "perf": np.float64(0.7491),
                "optimizer": trained_optimizer(zoo.build("default"))}, path)
    assert_loaded(path, model)


def test_mmcv_training_checkpoint_loads(default_model, tmp_path):
    # mmcv 1.x save_checkpoint: meta (mmcv_version, time, epoch, iter, the runner's meta: env_info, config,
    # seed, exp_name, and EvalHook's hook_msgs with best_score as numpy float64), state_dict, optimizer
    model = default_model
    meta = {"env_info": "sys.platform: linux\nPython: 3.8", "config": "model = dict(type='TopDown')", "seed": 0,
            "exp_name": "ViTPose_small_coco_256x192.py", "epoch": 210, "iter": 491400,
            "mmcv_version": "1.3.9", "time": "Sat Feb 12 10:00:00 2022", "best_score": np.float64(0.7382),
            "hook_msgs": {"last_ckpt": "work_dirs/epoch_210.pth", "best_score": np.float64(0.7382),
                          "best_ckpt": "work_dirs/best_AP_epoch_210.pth"},
            "counts": np.int64(3), "sigmas": np.array([0.026, 0.025], dtype=np.float32), "flag": np.bool_(True)}
    path = tmp_path / "epoch_210.pth"
    torch.save({"meta": meta, "state_dict": model.state_dict(), "optimizer": trained_optimizer(zoo.build("default"))},
               path)
    assert_loaded(path, model)


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_code_executing_pickle_does_nothing(layout, default_model, tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": default_model.state_dict(), "perf": Exploit(marker)}, path,
               _use_new_zipfile_serialization=layout == "zip")
    assert_refused_for_safety(path, "system")
    with pytest.raises(CheckpointError):
        tpx.load("default", weights=path)
    assert not marker.exists()


def test_other_python_objects_are_refused_in_the_tools_words(default_model, tmp_path):
    path = tmp_path / "objects.pth"
    torch.save({"state_dict": default_model.state_dict(), "log": np.array(["a", None], dtype=object)}, path)
    assert_refused_for_safety(path, "object")
    path = tmp_path / "custom.pth"
    torch.save({"state_dict": default_model.state_dict(), "when": __import__("datetime").date(2021, 1, 1)}, path)
    assert_refused_for_safety(path, "datetime.date")


def test_nan_weights_are_refused_naming_the_tensors(default_model, tmp_path):
    state = {k: v.clone() for k, v in default_model.state_dict().items()}
    names = [k for k, v in state.items() if v.is_floating_point()][:2]
    state[names[0]][..., 0] = float("nan")
    state[names[1]].fill_(float("inf"))
    for path in (tmp_path / "nan.pth", tmp_path / "nan.safetensors"):
        torch.save(state, path) if path.suffix == ".pth" else save_file(state, path)
        with pytest.raises(CheckpointError) as info:
            tpx.load("default", weights=path)
        message = str(info.value)
        assert "\n" not in message and str(path) in message and "2 tensor(s)" in message, message
        assert names[0] in message and names[1] in message


def test_closest_model_hint_gives_exact_counts(default_model, tmp_path):
    state = {k: v.clone() for k, v in default_model.state_dict().items()}
    changed = [k for k, v in state.items() if v.ndim == 1][:4]
    for k in changed:
        state[k] = torch.zeros(state[k].shape[0] + 1)
    with pytest.raises(CheckpointError) as info:
        load_into(zoo.build("tp-r-a3"), state, "four.pth")
    n = len(state)
    assert f"most resembles zoo model 'default' ({n - 4:,} of {n:,} keys fit)" in str(info.value)


def test_tokenpose_l_d24_384x288_zoo_name_has_the_official_keys():
    ref = json.loads((KEYS / "tokenpose_L_D24_384x288.json").read_text())
    with torch.device("meta"):
        model = zoo.build("tokenpose-l-d24-384x288")
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == ref["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == ref["params"]
    assert list(model.image_size) == ref["input_shape"][2:]
    e = zoo.entry("tokenpose-l-d24-384x288")
    assert e["checkpoint"] == ref["config"].replace(".yaml", ".pth")


# ---------------------------------------------------------------------------------------------------
# Safetensors, as strictly as the reference implementation

def write_raw(path, header, data: bytes, raw_header: bytes | None = None):
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}
DATA = struct.pack("<3f", 1.0, 2.0, 3.0)


def test_a_well_formed_file_loads(tmp_path):
    state = read_state_dict(write_raw(tmp_path / "ok.safetensors", {"__metadata__": {"format": "pt"}, **GOOD}, DATA))
    assert state["a"].tolist() == [1.0, 2.0] and state["b"].tolist() == [3.0]


def _with(**changes):
    header = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        name, field = key.split("__")
        header[name][field] = value
    return header


HOSTILE = {
    "shape_as_string": (_with(a__shape="2"), DATA, None),
    "shape_float": (_with(a__shape=[2.0]), DATA, None),
    "shape_bool": (_with(b__shape=[True]), DATA, None),
    "shape_negative": (_with(a__shape=[-2]), DATA, None),
    "offsets_float": (_with(a__data_offsets=[0.0, 8.0]), DATA, None),
    "offsets_string": (_with(a__data_offsets=["0", "8"]), DATA, None),
    "offsets_three": (_with(a__data_offsets=[0, 8, 12]), DATA, None),
    "overlap": (_with(b__data_offsets=[4, 8], b__shape=[1]), DATA, None),
    "gap": (_with(b__data_offsets=[9, 13]), DATA + b"\0", None),
    "reversed": (_with(b__data_offsets=[12, 8]), DATA, None),
    "trailing_bytes": (GOOD, DATA + b"\0" * 4, None),
    "short_buffer": (GOOD, DATA[:10], None),
    "size_mismatch": (_with(a__shape=[3]), DATA, None),
    "dtype_mismatch": (_with(a__dtype="F64"), DATA, None),
    "dtype_unknown": (_with(a__dtype="Q7"), DATA, None),
    "dtype_not_string": (_with(a__dtype=["F32"]), DATA, None),
    "metadata_list": ({"__metadata__": ["x"], **GOOD}, DATA, None),
    "metadata_nested": ({"__metadata__": {"k": {"v": 1}}}, b"", None),
    "metadata_number": ({"__metadata__": {"k": 1}, **GOOD}, DATA, None),
    "info_list": ({"a": [1, 2]}, b"", None),
    "header_list": (None, b"", b"[1, 2]  "),
    "not_utf8": (None, b"", b"{\"\xff\": 1}"),
    "leading_space": (None, DATA, b" " + json.dumps(GOOD).encode()),
    "duplicate_key": (None, DATA, json.dumps(GOOD).encode()[:-1] + b', "a": ' + json.dumps(GOOD["a"]).encode() + b"}"),
    "nan_constant": (None, b"", b'{"a": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 0]}}'),
    "deep_nesting": (None, b"", b'{"a": ' + b"[" * 100000 + b"]" * 100000 + b"}"),
    "huge_shape": (_with(a__shape=[2**40, 2**40]), DATA, None),
    "shape_over_usize": (_with(a__shape=[2**64]), DATA, None),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_header_is_a_checkpoint_error_naming_the_file(case, tmp_path):
    header, data, raw = HOSTILE[case]
    path = write_raw(tmp_path / "model.safetensors", header, data, raw)
    with pytest.raises(CheckpointError) as info:
        read_state_dict(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("length", [2**63, 100_000_001, 10**6])
def test_header_length_out_of_bounds(length, tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", length) + b"{}")
    with pytest.raises(CheckpointError, match="header length"):
        read_state_dict(path)


def test_random_byte_flips_never_raise_anything_but_checkpoint_error(default_model, tmp_path):
    path = save_file(dict(list(default_model.state_dict().items())[:12]), tmp_path / "model.safetensors")
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    rng = random.Random(0)
    refused = 0
    for _ in range(400):
        damaged = bytearray(raw)
        for _ in range(rng.choice((1, 1, 2, 3))):
            damaged[rng.randrange(8 + n)] = rng.randrange(256)
        path.write_bytes(bytes(damaged))
        try:
            read_state_dict(path)
        except CheckpointError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
            refused += 1
    assert refused > 300     # a flip inside a name or a padding space can leave a well-formed file


# ---------------------------------------------------------------------------------------------------
# Sharded folders

@pytest.mark.parametrize("shard", ["../outside.safetensors", "ABS", "sub/../../outside.safetensors", "..", "sub/x"])
def test_shard_index_cannot_point_outside_its_folder(shard, tmp_path):
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    save_file({"w": torch.ones(2)}, tmp_path / "outside.safetensors")
    save_file({"w": torch.ones(2)}, folder / "sub" / "x")
    if shard == "ABS":
        shard = str(tmp_path / "outside.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": shard}}))
    with pytest.raises(CheckpointError, match="outside its folder"):
        read_state_dict(folder)


@pytest.mark.parametrize("index", ['{"weight_map": ["a"]}', "[]", "not json", '{"weight_map": {"w": 3}}',
                                   '{"weight_map": {"w": "model-1.safetensors", "v": "model-1.safetensors"}}'])
def test_bad_shard_index_is_a_checkpoint_error(index, tmp_path):
    save_file({"w": torch.ones(2)}, tmp_path / "model-1.safetensors")
    (tmp_path / "model.safetensors.index.json").write_text(index)
    with pytest.raises(CheckpointError):
        read_state_dict(tmp_path)
