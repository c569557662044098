"""How explain work is scheduled (serving/explain_batcher.py): cut into bounded executions, merged across
callers, sized to a time slice once their cost is measured, run on a thread of their own beside the
Classify batcher's executions, shed when too much is queued, dropped when its deadline passed. The
"model" is a real numpy function run on the batchers' real threads."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from batching_models import GatedModel, rows

from classify_server.errors import DeadlineExceededError, OverloadedError
from classify_server.serving.batcher import BatchingPolicy, DynamicBatcher
from classify_server.serving.explain_batcher import ExplainBatcher
from classify_server.serving.explain_runner import ExplainOutput, rows_per_item


class SummingExplainer:
    """An explain runner whose attribution of an item is the item itself times its target; it records
    every execution (method, steps, items) in the order the model ran it, beside the Classify batches."""

    def __init__(self, log: list[str], gate: threading.Event) -> None:
        self.log = log
        self.gate = gate
        self.executions: list[tuple[str, int, int]] = []

    def takes_steps(self, method: str) -> bool:
        return method == "integrated_gradients"

    def run(self, method: str, inputs: np.ndarray, targets: np.ndarray, steps: int) -> ExplainOutput:
        self.gate.wait(timeout=10)
        self.executions.append((method, steps, len(inputs)))
        self.log.append(f"explain {len(inputs)}")
        n = len(inputs)
        chosen = np.where(targets < 0, 0, targets).astype(np.int32)
        return ExplainOutput(
            attributions=(inputs * chosen[:, None]).astype(np.float32),
            targets=chosen,
            probabilities=np.full((n, 2), 0.5, np.float32),
            logit=inputs.sum(axis=1),
            baseline_logit=np.zeros(n, np.float32),
            completeness_gap=np.zeros(n, np.float32),
        )


class LoggingModel(GatedModel):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        result = super().__call__(batch)
        self.log.append(f"classify {len(batch)}")
        return result


class SlowExplainer(SummingExplainer):
    """Takes SECONDS_PER_ITEM of wall time per item, as a real signature's cost grows with its items."""

    SECONDS_PER_ITEM = 0.02

    def run(self, method: str, inputs: np.ndarray, targets: np.ndarray, steps: int) -> ExplainOutput:
        time.sleep(self.SECONDS_PER_ITEM * len(inputs))
        return super().run(method, inputs, targets, steps)


def make(
    max_batch_size: int = 66, capacity: int = 10_000, slice_seconds: float = 0.0, runner=SummingExplainer
) -> tuple[DynamicBatcher, ExplainBatcher, list[str]]:
    log: list[str] = []
    model = LoggingModel(log)
    batcher = DynamicBatcher("m", model, BatchingPolicy(max_batch_size, capacity))
    explain_gate = threading.Event()  # its own: explain runs on its own thread, beside the batches
    explain_gate.set()
    explainer = ExplainBatcher("m", runner(log, explain_gate), max_batch_size, capacity, slice_seconds)
    batcher.start()
    return batcher, explainer, log


def test_a_large_request_runs_in_bounded_executions_and_comes_back_whole() -> None:
    async def scenario() -> None:
        batcher, explainer, _ = make(max_batch_size=66)  # 66 rows: 2 items of 32 steps (34 rows each)
        items = rows(5, 2.0)
        output = await explainer.submit("integrated_gradients", 32, items, np.array([1, 1, 1, 1, 1]), None)
        assert rows_per_item("integrated_gradients", 32) == 34  # 33 path points and the input
        assert explainer.runner.executions == [("integrated_gradients", 32, 1)] * 5  # 66 // 34 = 1
        np.testing.assert_array_equal(output.attributions, items)
        await explainer.close()
        await batcher.close()

    asyncio.run(scenario())


def test_callers_with_the_same_method_and_steps_share_an_execution() -> None:
    async def scenario() -> None:
        batcher, explainer, _ = make(max_batch_size=128)  # 3 items of 32 steps fit in one execution
        explainer.runner.gate.clear()  # hold the first execution so the others queue behind it
        first = asyncio.create_task(
            explainer.submit("integrated_gradients", 32, rows(1), np.array([1]), None)
        )
        await asyncio.sleep(0.05)
        others = [
            asyncio.create_task(explainer.submit("integrated_gradients", 32, rows(1, v), np.array([2]), None))
            for v in (3.0, 4.0)
        ]
        odd = asyncio.create_task(explainer.submit("integrated_gradients", 8, rows(1), np.array([1]), None))
        await asyncio.sleep(0.05)
        explainer.runner.gate.set()
        results = await asyncio.gather(first, *others, odd)
        # The two callers of (32 steps) ran together; the 8-step one could not join them.
        assert explainer.runner.executions == [
            ("integrated_gradients", 32, 1),
            ("integrated_gradients", 32, 2),
            ("integrated_gradients", 8, 1),
        ]
        np.testing.assert_array_equal(results[1].attributions, rows(1, 3.0) * 2)
        np.testing.assert_array_equal(results[2].attributions, rows(1, 4.0) * 2)
        await explainer.close()
        await batcher.close()

    asyncio.run(scenario())


def test_classify_batches_run_while_an_explain_execution_runs() -> None:
    """Explain has its own thread: a Classify request arriving while an explain execution is held
    (a long one, as a real integrated-gradients item is) is answered at once, not after it."""

    async def scenario() -> None:
        batcher, explainer, log = make(max_batch_size=66)
        explainer.runner.gate.clear()
        explain = asyncio.create_task(
            explainer.submit("integrated_gradients", 32, rows(4), np.array([1, 1, 1, 1]), None)
        )
        await asyncio.sleep(0.05)  # the first of four executions is running (held), three are queued
        answer = await asyncio.wait_for(batcher.submit(rows(2, 3.0)), timeout=5)
        np.testing.assert_array_equal(answer, rows(2, 3.0).sum(axis=1, keepdims=True))
        assert log == ["classify 2"] and not explain.done()
        explainer.runner.gate.set()
        await explain
        assert log == ["classify 2"] + ["explain 1"] * 4
        await explainer.close()
        await batcher.close()

    asyncio.run(scenario())


def test_executions_are_sized_to_the_time_slice_once_the_cost_per_item_is_measured() -> None:
    """At 20 ms an item and a 70 ms slice, executions take 3 items (rows alone would allow 10); the
    first, before anything is measured, takes one, so it is short too."""

    async def scenario() -> None:
        batcher, explainer, _ = make(max_batch_size=340, slice_seconds=0.07, runner=SlowExplainer)
        items = rows(10, 2.0)
        output = await explainer.submit("integrated_gradients", 32, items, np.ones(10, np.int64), None)
        sizes = [count for _, _, count in explainer.runner.executions]
        assert sum(sizes) == 10 and sizes[0] == 1, sizes
        # More than one item once measured (a cost under 35 ms), never more than the slice holds.
        assert all(1 < size <= 3 for size in sizes[1:-1]) and sizes[-1] <= 3, sizes
        np.testing.assert_array_equal(output.attributions, items)
        await explainer.close()
        await batcher.close()

    asyncio.run(scenario())


def test_too_much_queued_explain_work_is_refused_with_what_it_would_cost() -> None:
    async def scenario() -> None:
        batcher, explainer, _ = make(max_batch_size=66, capacity=100)
        explainer.runner.gate.clear()
        # Alone, a request over the bound is taken (it runs in bounded executions anyway)...
        first = asyncio.create_task(
            explainer.submit("integrated_gradients", 32, rows(4), np.ones(4, int), None)
        )
        await asyncio.sleep(0.05)
        # ...behind queued work it must fit.
        with pytest.raises(OverloadedError, match=r"3 items x 34"):
            await explainer.submit("integrated_gradients", 32, rows(3), np.array([1, 1, 1]), None)
        assert explainer.stats.rejected == 1
        explainer.runner.gate.set()
        assert len((await first).targets) == 4
        await explainer.close()
        await batcher.close()

    asyncio.run(scenario())


def test_work_whose_deadline_passed_in_the_queue_is_dropped_before_compute() -> None:
    async def scenario() -> None:
        batcher, explainer, _ = make(max_batch_size=66)
        explainer.runner.gate.clear()
        loop = asyncio.get_running_loop()
        first = asyncio.create_task(explainer.submit("occlusion", 0, rows(1), np.array([1]), None))
        await asyncio.sleep(0.05)
        late = asyncio.create_task(
            explainer.submit("occlusion", 0, rows(1), np.array([1]), loop.time() + 0.05)
        )
        await asyncio.sleep(0.1)
        explainer.runner.gate.set()
        await first
        with pytest.raises(DeadlineExceededError):
            await late
        assert explainer.stats.expired == 1 and len(explainer.runner.executions) == 1
        await explainer.close()
        await batcher.close()

    asyncio.run(scenario())
