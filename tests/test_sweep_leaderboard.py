"""Sweep runs on the leaderboard: a class order that follows the run seed is
the seed axis (one board, mean +- std over seeds), a fixed other order is not."""

from __future__ import annotations

from clbench.leaderboard.tables import runs_frame, scenario_board
from tests.leaderboard_fixtures import fake_result


def with_order_seed(result, order_seed):
    result.config["scenario"]["seed"] = order_seed
    return result


def test_order_seeds_that_follow_the_run_seed_are_one_board_over_seeds():
    runs = [
        with_order_seed(fake_result("simplecil", seed=s, level=0.5 + 0.01 * i), s)
        for i, s in enumerate((1993, 1994, 1995))
    ]
    fixed = with_order_seed(fake_result("simplecil", seed=1994), 1993)
    frame = runs_frame([*runs, fixed])
    assert set(frame["scenario"]) == {"emoji-cil", "emoji-cil (seed=1993)"}
    board = scenario_board(frame, "emoji-cil")
    row = board[board["method"] == "simplecil"].iloc[0]
    assert row["seeds"] == 3
    assert sorted(row["run_ids"]) == sorted(r.run_id for r in runs)
