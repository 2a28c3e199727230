"""Compare training recipes fairly: the same seeds and budget for every arm, scored at fixed points, with error bars.

``plan_compare`` checks the arms (each a set of ``gankit train`` settings), ``run_compare`` measures each arm's cost
per step and trains every (arm, seed) run as an ordinary, resumable run folder under the compare folder, and
``write_report`` writes the table, the intervals and verdicts, the plot and the sample grids (``gankit compare``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gankit import lazy_exports

if TYPE_CHECKING:
    from gankit.compare._costs import Cost as Cost
    from gankit.compare._costs import Measured as Measured
    from gankit.compare._costs import measure_costs as measure_costs
    from gankit.compare._plan import SET_BY_COMPARE as SET_BY_COMPARE
    from gankit.compare._plan import Arm as Arm
    from gankit.compare._plan import Budget as Budget
    from gankit.compare._plan import BudgetUnit as BudgetUnit
    from gankit.compare._plan import Job as Job
    from gankit.compare._plan import Plan as Plan
    from gankit.compare._plan import default_folder as default_folder
    from gankit.compare._plan import parse_seeds as parse_seeds
    from gankit.compare._plan import plan_compare as plan_compare
    from gankit.compare._progress import PlainProgress as PlainProgress
    from gankit.compare._progress import RichProgress as RichProgress
    from gankit.compare._progress import SilentProgress as SilentProgress
    from gankit.compare._report import tables as tables
    from gankit.compare._report import write_report as write_report
    from gankit.compare._runner import run_compare as run_compare
    from gankit.compare._statistics import Difference as Difference
    from gankit.compare._statistics import Summary as Summary
    from gankit.compare._statistics import compare_arm as compare_arm
    from gankit.compare._statistics import summarize as summarize
    from gankit.compare._statistics import t_quantile as t_quantile
    from gankit.compare._statistics import verdict as verdict
    from gankit.compare._statistics import welch_interval as welch_interval

__all__, __getattr__, __dir__ = lazy_exports(__name__)
