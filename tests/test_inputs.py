"""How callers pass inputs (one array, a list by index, a dict by name or index), dynamic shapes,
and the specific error each kind of bad input gets, failing only its own call under load."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import models
import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
from concurrency import gather

import aioinfer

pytestmark = pytest.mark.anyio


def pair(i: int) -> tuple[np.ndarray, np.ndarray]:
    """Job ``i``'s inputs for two_in_two_out: ``a`` f32 and ``b`` i32, both [2, 3]."""
    a = np.arange(6, dtype=np.float32).reshape(2, 3) + i
    b = np.full((2, 3), i % 7 - 3, np.int32)
    return a, b


def assert_sum_prod(out: aioinfer.Outputs, a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_array_equal(out["sum"], a + b.astype(np.float32))
    np.testing.assert_array_equal(out["prod"], a * b.astype(np.float32))


@pytest.fixture
async def two_by_two() -> aioinfer.AsyncModel:
    async with aioinfer.load(models.two_in_two_out(), device="CPU", config=models.EXACT) as model:
        yield model


FORMS: dict[str, Callable[[np.ndarray, np.ndarray], Any]] = {
    "list": lambda a, b: [a, b],
    "tuple": lambda a, b: (a, b),
    "dict by name": lambda a, b: {"a": a, "b": b},
    "dict by name, other order": lambda a, b: {"b": b, "a": a},
    "dict by index": lambda a, b: {0: a, 1: b},
    "dict mixed": lambda a, b: {0: a, "b": b},
    "nested lists": lambda a, b: [a.tolist(), b.tolist()],
    "int64 for i32": lambda a, b: [a, b.astype(np.int64)],
    "f64 for f32": lambda a, b: [a.astype(np.float64), b],
}


@pytest.mark.parametrize("form", FORMS)
async def test_two_inputs_every_way_concurrently(two_by_two: aioinfer.AsyncModel, form: str) -> None:
    jobs = [pair(i) for i in range(200)]
    outs = await gather(*(two_by_two.infer(FORMS[form](a, b)) for a, b in jobs))
    for (a, b), out in zip(jobs, outs, strict=True):
        assert_sum_prod(out, a, b)


async def test_dynamic_shapes_vary_between_concurrent_calls() -> None:
    rng = np.random.default_rng(5)
    shapes = [(int(rng.integers(1, 9)), int(rng.integers(1, 33))) for _ in range(300)]
    xs = [rng.integers(-50, 50, size=s).astype(np.float32) for s in shapes]  # integer sums are exact
    async with aioinfer.load(models.dynamic_sum(), device="CPU", config=models.EXACT) as model:
        outs = await gather(*(model.infer(x) for x in xs))
    assert len({x.shape for x in xs}) > 100
    for x, out in zip(xs, outs, strict=True):
        assert out["s"].shape == (x.shape[0],)
        np.testing.assert_array_equal(out["s"], x.sum(axis=1))


BAD: dict[str, tuple[Any, type[aioinfer.InputError], tuple[str, ...]]] = {
    # name: (inputs, error, words its message must contain)
    "one of two": (
        np.zeros((2, 3), np.float32),
        aioinfer.InputCountError,
        ("2 input(s)", "got 1", "'a'", "'b'"),
    ),
    "three of two": ([np.zeros((2, 3), np.float32)] * 3, aioinfer.InputCountError, ("2 input(s)", "got 3")),
    "missing name": ({"a": np.zeros((2, 3), np.float32)}, aioinfer.InputCountError, ("got 1",)),
    "unknown name": (
        {"a": np.zeros((2, 3), np.float32), "c": np.zeros((2, 3), np.int32)},
        aioinfer.InputNameError,
        ("'c'", "['a', 'b']"),
    ),
    "index out of range": (
        {0: np.zeros((2, 3), np.float32), 2: np.zeros((2, 3), np.int32)},
        aioinfer.InputNameError,
        ("2", "['a', 'b']"),
    ),
    "wrong shape": (
        [np.zeros((2, 4), np.float32), np.zeros((2, 3), np.int32)],
        aioinfer.InputShapeError,
        ("'a'", "expected shape [2,3]", "got [2, 4]"),
    ),
    "wrong rank": (
        [np.zeros((6,), np.float32), np.zeros((2, 3), np.int32)],
        aioinfer.InputShapeError,
        ("expected shape [2,3]", "got [6]"),
    ),
    "complex": (
        [np.zeros((2, 3), np.complex64), np.zeros((2, 3), np.int32)],
        aioinfer.InputDtypeError,
        ("'a'", "complex64", "float32"),
    ),
    "float for int": (
        [np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32)],
        aioinfer.InputDtypeError,
        ("'b'", "float32", "int32"),
    ),
    "strings": (
        [np.full((2, 3), "1.5"), np.zeros((2, 3), np.int32)],
        aioinfer.InputDtypeError,
        ("'a'", "<U3", "float32"),
    ),
    "a plain string": (["abc", np.zeros((2, 3), np.int32)], aioinfer.InputDtypeError, ("'a'",)),
    "ragged list": (
        [[[1.0, 2.0, 3.0], [4.0]], np.zeros((2, 3), np.int32)],
        aioinfer.InputDtypeError,
        ("'a'", "list"),
    ),
}


@pytest.mark.parametrize("case", BAD)
async def test_bad_input_gets_a_specific_error(two_by_two: aioinfer.AsyncModel, case: str) -> None:
    inputs, error, words = BAD[case]
    with pytest.raises(error) as info:
        await two_by_two.infer(inputs)
    assert isinstance(info.value, ValueError)  # every InputError is a ValueError too
    for word in words:
        assert word in str(info.value), (word, str(info.value))


async def test_bad_inputs_fail_only_their_own_call_under_load(
    two_by_two: aioinfer.AsyncModel,
) -> None:
    cases = list(BAD.values())
    jobs: list[tuple[Any, Any]] = []  # (inputs, expected pair or the expected error type)
    for i in range(600):
        if i % 4 == 3:
            inputs, error, _ = cases[i // 4 % len(cases)]
            jobs.append((inputs, error))
        else:
            a, b = pair(i)
            jobs.append(({"a": a, "b": b}, (a, b)))
    results = await gather(*(two_by_two.infer(x) for x, _ in jobs), return_exceptions=True)
    for (_, expected), result in zip(jobs, results, strict=True):
        if isinstance(expected, tuple):
            assert isinstance(result, aioinfer.Outputs), result
            assert_sum_prod(result, *expected)
        else:
            assert type(result) is expected, (expected, result)
    stats = two_by_two.stats()
    assert stats.submitted == stats.completed == 450  # a bad input never reaches the device
    assert stats.failed == 0


async def test_input_name_error_reads_as_a_sentence(two_by_two: aioinfer.AsyncModel) -> None:
    with pytest.raises(KeyError) as info:  # also a KeyError, for dict-minded callers
        await two_by_two.infer({"a": pair(0)[0], "nope": pair(0)[1]})
    assert str(info.value).startswith("the model has no input 'nope'")


async def test_single_input_takes_nested_lists_and_casts_within_kind() -> None:
    async with aioinfer.load(models.linear(), device="CPU", config=models.EXACT) as model:
        from_list = await model.infer([[1, 2, 3, 4]])
        from_int = await model.infer(np.array([[1, 2, 3, 4]], np.int64))
        by_name = await model.infer({"x": np.array([[1, 2, 3, 4]], np.float32)})
    for out in (from_list, from_int, by_name):
        np.testing.assert_array_equal(out["y"], np.array([[3, 5, 7, 9]], np.float32))


async def test_a_list_holding_one_array_is_by_index_for_a_single_input_model() -> None:
    x = np.array([[1, 2, 3, 4]], np.float32)
    async with aioinfer.load(models.linear(), device="CPU", config=models.EXACT) as model:
        by_index = await model.infer([x])
        as_tuple = await model.infer((x,))
    np.testing.assert_array_equal(by_index["y"], models.linear_expected(x))
    np.testing.assert_array_equal(as_tuple["y"], models.linear_expected(x))


async def test_integer_narrowing_checks_the_range(two_by_two: aioinfer.AsyncModel) -> None:
    """``b`` is i32: int64 values that fit are converted, values that would wrap are refused."""
    a, _ = pair(2)
    fits = np.full((2, 3), 2**31 - 1, np.int64)
    out = await two_by_two.infer({"a": a, "b": fits})
    np.testing.assert_array_equal(out["sum"], a + np.float32(2**31 - 1))
    wraps = r"2147483648\.\.2147483648 do not fit the model's int32"
    with pytest.raises(aioinfer.InputDtypeError, match=wraps):
        await two_by_two.infer({"a": a, "b": np.full((2, 3), 2**31, np.int64)})


async def test_the_same_input_given_twice_is_refused(two_by_two: aioinfer.AsyncModel) -> None:
    """``a`` by name and by index: one of the two arrays would be silently dropped."""
    a, b = pair(1)
    with pytest.raises(aioinfer.InputError, match="'a'"):
        await two_by_two.infer({"a": a, 0: a + 1, "b": b})


@pytest.mark.parametrize("share_inputs", [False, True], ids=["copied", "shared"])
async def test_views_and_read_only_arrays_are_read_correctly(share_inputs: bool) -> None:
    base = np.arange(64, dtype=np.float32).reshape(8, 8)
    views = {
        "strided": base[:, ::2],
        "transposed": base[:4, :4].T,
        "fortran order": np.asfortranarray(base[:, :4]),
        "read-only broadcast": np.broadcast_to(np.arange(4, dtype=np.float32), (3, 4)),
        "empty batch": np.zeros((0, 4), np.float32),
    }
    async with aioinfer.load(
        models.linear(), device="CPU", config=models.EXACT, share_inputs=share_inputs
    ) as model:
        outs = await gather(*(model.infer(x) for x in views.values()))
    for (name, x), out in zip(views.items(), outs, strict=True):
        np.testing.assert_array_equal(out[0], models.linear_expected(x), err_msg=name)


def bf16_and_f8_inputs() -> ov.Model:
    """Inputs ``a`` bf16 and ``b`` f8e4m3 [1, 4]; output ``y = 2a + b`` in f32."""
    a = ops.parameter([1, 4], ov.Type.bf16, name="a")
    b = ops.parameter([1, 4], ov.Type.f8e4m3, name="b")
    y = ops.add(
        ops.multiply(ops.convert(a, np.float32), ops.constant(np.float32(2))), ops.convert(b, np.float32)
    )
    return ov.Model([y], [a, b], "exotic_floats")


async def test_float_inputs_numpy_lacks_take_float32_exactly() -> None:
    """bf16 and f8 have no numpy dtype; OpenVINO's own conversion would misread a float32 array.
    ``load`` gives those inputs an f32 interface, so values representable in both come out exact."""
    a = np.array([[1.5, -2.25, 3.0, 0.5]], np.float32)
    b = np.array([[1.0, 0.5, -2.0, 4.0]], np.float32)
    async with aioinfer.load(bf16_and_f8_inputs(), device="CPU", config=models.EXACT) as model:
        assert [i.element_type for i in model.info.inputs] == ["f32", "f32"]
        out = await model.infer({"a": a, "b": b})
    np.testing.assert_array_equal(out[0], 2 * a + b)


async def test_a_compiled_model_with_a_bf16_input_refuses_arrays_instead_of_misreading_them() -> None:
    compiled = await anyio.to_thread.run_sync(
        ov.Core().compile_model, bf16_and_f8_inputs(), "CPU", models.EXACT
    )
    async with aioinfer.AsyncModel(compiled, device="CPU") as model:
        with pytest.raises(aioinfer.InputDtypeError, match="'a' is bf16, which numpy cannot hold"):
            await model.infer({"a": np.ones((1, 4), np.float32), "b": np.ones((1, 4), np.float32)})
