"""Leaderboard site, single-run reports and the tidy results table.

Everything here is a pure function of stored RunResult records.
"""

from clbench.leaderboard.site import build_site, write_report
from clbench.leaderboard.tables import runs_frame, scenario_board

__all__ = ["build_site", "runs_frame", "scenario_board", "write_report"]
