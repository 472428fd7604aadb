"""--resume: the settings of the run being continued, its finished per-image outcomes, and their merge
with what this run evaluates, so that the result equals an uninterrupted run's."""
from __future__ import annotations

import pathlib
from dataclasses import dataclass

from .outcome import ImageOutcome
from .run_config import RESULT_FIELDS, flag_name

# result-deciding switches a flag can only turn on: the saved run's value holds whatever is given
SAVED_SWITCHES = ("no_fp16_reference", "use_ema")


def settings_to_continue(path: str, given: dict) -> dict:
    """The saved run's result-deciding settings; a flag given now that contradicts one is an error."""
    from .compare import read_report

    saved = read_report(path).get("settings")
    if not saved:
        raise ValueError(f"--resume {path}: the file records no settings (written by an older version)")
    for key in RESULT_FIELDS:
        value = given.get(key)
        if value not in (None, False) and value != saved.get(key):
            raise ValueError(f"--resume {path} continues that run with its own settings: "
                             f"--{flag_name(key)} {value} differs from its {saved.get(key)}")
    settings = {key: saved.get(key) for key in RESULT_FIELDS if key in saved}
    for key in SAVED_SWITCHES:
        settings[key] = bool(saved.get(key))
    return settings


@dataclass
class PriorRun:
    """The run --resume continues: its report and the outcomes it finished."""

    path: pathlib.Path
    report: dict
    outcomes: list[ImageOutcome]

    def done(self) -> set[int]:
        return {o.index for o in self.outcomes}

    def check_weights(self, weights_sha256) -> None:
        if self.report.get("weights_sha256") != weights_sha256:
            raise ValueError(f"--resume {self.path}: its weights ({self.report.get('weights')}) differ from these")

    def merge_into(self, gathered, modes: list[str]) -> None:
        """gathered (gather.Gathered of this run) extended by the earlier run's outcomes, model time and
        batch counts; a batch the earlier run had begun re-runs whole, so this run's outcomes win."""
        again = {o.index for o in gathered.rows}
        gathered.rows = [o for o in self.outcomes if o.index not in again] + gathered.rows
        gathered.model_seconds = [s + self.report["results"][m].get("model_seconds", 0.0)
                                  for s, m in zip(gathered.model_seconds, modes)]
        for size, count in self.report.get("batch_sizes_run", {}).items():
            gathered.batch_sizes[int(size)] = gathered.batch_sizes.get(int(size), 0) + count

    def describe(self) -> dict:
        return {"path": str(self.path), "images_before": len(self.outcomes)}


def load_prior(path: pathlib.Path, modes: list[str], source) -> PriorRun:
    """The report and per-image outcomes of the run --resume continues, checked against this one."""
    from .compare import read_report
    from .outputs import ResultPaths, read_predictions

    prior = read_report(path)
    if list(prior["results"]) != modes:
        raise ValueError(f"--resume {path}: it ran modes {', '.join(prior['results'])}, not {', '.join(modes)}")
    if prior["data"].get("expected") != source.size or prior["data"]["source"] != source.describe():
        raise ValueError(f"--resume {path}: it evaluated {prior['data']['source']} "
                         f"({prior['data'].get('expected')} images), not {source.describe()} ({source.size})")
    predictions = ResultPaths.beside(path).predictions
    if not predictions.is_file():
        raise ValueError(f"--resume {path}: its per-image predictions {predictions} are missing")
    return PriorRun(path, prior, read_predictions(predictions, modes))
