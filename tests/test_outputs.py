"""``Outputs``: by index and by name, and arrays that belong to the caller (no later job writes
into them, they are writable, and no two results share memory)."""

from __future__ import annotations

import models
import numpy as np
import pytest
from concurrency import gather

import aioinfer

pytestmark = pytest.mark.anyio


@pytest.fixture
async def neg_square() -> aioinfer.AsyncModel:
    async with aioinfer.load(models.neg_and_square(), device="CPU", config=models.EXACT) as model:
        yield model


async def test_outputs_by_index_by_name_and_by_every_name(neg_square: aioinfer.AsyncModel) -> None:
    x = np.array([1, -2, 3], np.float32)
    out = await neg_square.infer(x)
    assert len(out) == 2
    np.testing.assert_array_equal(out[0], -x)
    np.testing.assert_array_equal(out["neg"], -x)
    np.testing.assert_array_equal(out[1], x * x)
    np.testing.assert_array_equal(out[-1], x * x)
    assert out["square"] is out["sq"] is out[1]
    assert out.names[0] == "neg" and out.names[1] in ("square", "sq")
    assert [a is b for a, b in zip(out, (out[0], out[1]), strict=True)] == [True, True]
    assert set(out.to_dict()) == set(out.names)
    assert out.to_dict()["neg"] is out[0]
    assert "float32[3]" in repr(out)


async def test_unknown_output_name_lists_the_names(neg_square: aioinfer.AsyncModel) -> None:
    out = await neg_square.infer(np.ones(2, np.float32))
    with pytest.raises(KeyError, match=r"no output named 'cube'.*'neg'.*'sq'.*'square'"):
        out["cube"]
    with pytest.raises(IndexError):
        out[2]


async def test_every_output_by_name_under_concurrency(neg_square: aioinfer.AsyncModel) -> None:
    xs = [np.arange(i % 9 + 1, dtype=np.float32) - i for i in range(300)]
    outs = await gather(*(neg_square.infer(x) for x in xs))
    for x, out in zip(xs, outs, strict=True):
        np.testing.assert_array_equal(out["neg"], -x)
        np.testing.assert_array_equal(out["sq"], x * x)


async def test_earlier_results_survive_many_later_jobs() -> None:
    async with aioinfer.load(models.linear(), device="CPU", config=models.EXACT, num_requests=2) as model:
        first_xs = [np.full((1, 4), i, np.float32) for i in range(50)]
        kept = await gather(*(model.infer(x) for x in first_xs))
        snapshots = [out[0].copy() for out in kept]
        later = await gather(*(model.infer(np.full((1, 4), -i, np.float32)) for i in range(2000)))
    for x, out, snapshot in zip(first_xs, kept, snapshots, strict=True):
        np.testing.assert_array_equal(out[0], snapshot)
        np.testing.assert_array_equal(out[0], models.linear_expected(x))
    assert float(later[-1][0][0, 0]) == -2 * 1999 + 1


async def test_results_are_writable_and_share_no_memory(neg_square: aioinfer.AsyncModel) -> None:
    x = np.arange(4, dtype=np.float32)
    outs = await gather(*(neg_square.infer(x) for _ in range(20)))
    arrays = [a for out in outs for a in out]
    for i, a in enumerate(arrays):
        assert a.flags.writeable
        assert not np.shares_memory(a, x)
        assert not any(np.shares_memory(a, b) for b in arrays[i + 1 :])
    outs[0][0][:] = 42  # the caller may write into its result...
    np.testing.assert_array_equal(outs[1][0], -x)  # ...without touching anyone else's
    again = await neg_square.infer(x)
    np.testing.assert_array_equal(again["neg"], -x)
    np.testing.assert_array_equal(outs[0][0], np.full(4, 42, np.float32))


def test_rows_are_each_callers_own_slice_of_a_batch() -> None:
    batch = aioinfer.Outputs([np.arange(12, dtype=np.float32).reshape(4, 3)], ["y"], {"y": 0})
    first, rest = batch.rows(0, 1), batch.rows(1, 4)
    assert first["y"].tolist() == [[0, 1, 2]] and rest[0].shape == (3, 3)
    rest["y"][:] = -1  # a caller writing its rows leaves the other caller's untouched
    assert first["y"].tolist() == [[0, 1, 2]] and first.names == ["y"]
