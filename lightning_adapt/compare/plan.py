"""The runs a comparison trains, in order: each fine-tuning and CPT variant (one run per size and seed of a data-size
sweep, one per learning rate and seed of a search), and CPT→FT; and the checks of the sweeps and searches that plan
them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from lightning_adapt.compare.settings import RunSettings, Search, SweepSizes

TRAINED = ("finetune", "cpt")
"""The sections of `Compare` that hold training settings, one per training method."""
SWEPT_BY = {"finetune": ("examples", "max_examples", "n"), "cpt": ("tokens", "max_tokens", "t")}
"""Per method: the `SweepSizes` field that sizes it, the data field a size sets, and the run-name tag of a size."""
SEARCH_EXAMPLE = "search: {learning_rate: [1e-4, 3e-4, 1e-3], seeds: [0, 1, 2]}"


@dataclass(frozen=True)
class PlannedRun:
    """One training run of a comparison, as `run_compare` will launch it."""

    name: str
    """Its name in the report and its folder under out_dir/runs/."""
    method: Literal["finetune", "cpt", "cpt+finetune"]
    settings: RunSettings
    """Its settings, the data subset of a sweep size applied."""
    seed: int
    """Seed set before the run."""
    base: str | None = None
    """The run whose final/ checkpoint it starts from (CPT→FT); None: the base model."""
    sweep: dict[str, Any] | None = None
    """For a sweep size: {"of": the swept run's name, "examples" or "tokens": the size, "seed": the subset seed}."""
    search: dict[str, Any] | None = None
    """For a run of a search: {"of": the searched run's name, "learning_rate" and "seed": this run's, "learning_rates"
    and "seeds": every one the search tries}."""

    @property
    def cpt(self) -> bool:
        return self.method == "cpt"


def planned_runs(methods: list[str], variants: Mapping[str, list[RunSettings]], sweep: dict[str, SweepSizes],
                 seed: int) -> list[PlannedRun]:
    """The training runs of `methods`, in order, from each method's settings `variants` (method -> list): each
    variant (one run per size and seed when swept, one per learning rate and seed when searched), and CPT→FT (the
    first fine-tuning settings, at their own learning rate, on the first CPT run's result). Every size of a sweep
    trains for the run's `max_steps` optimizer steps (small subsets see more epochs): the same number of updates and
    the same learning-rate schedule for every size, so the curve shows what more data buys at equal training
    compute."""
    planned = []
    for method in methods:
        if method == "cpt+finetune":
            first_cpt, first_ft = variants["cpt"][0], variants["finetune"][0]
            planned.append(PlannedRun(f"{first_cpt.run_name}+{first_ft.run_name}", method, first_ft, seed,
                                      base=first_cpt.run_name))
        elif method in TRAINED:
            planned += [run for settings in variants[method]
                        for run in (_searched(method, settings, seed) if settings.search is not None
                                    else _sized(method, settings, sweep, seed))]
    return planned


def sweep_of(sweep: dict[str, SweepSizes], name: str, method: str) -> SweepSizes | None:
    """The sweep of the run `name`: its own, or that of its method."""
    return sweep.get(name) or sweep.get(method)


def _sized(method: Literal["finetune", "cpt"], settings: RunSettings, sweep: dict[str, SweepSizes], seed: int
           ) -> list[PlannedRun]:
    """The run of `settings`, or one run per size and seed of its sweep."""
    sizes = sweep_of(sweep, settings.run_name, method)
    if sizes is None:
        return [PlannedRun(settings.run_name, method, settings, seed)]
    unit, field_name, tag = SWEPT_BY[method]
    runs = []
    for subset_seed in sizes.seeds:
        for size in getattr(sizes, unit):
            name = f"{settings.run_name}-{tag}{size}" + (f"-s{subset_seed}" if len(sizes.seeds) > 1 else "")
            data = replace(settings.data, **{field_name: size, "subset_seed": subset_seed})
            runs.append(PlannedRun(name, method, replace(settings, data=data), seed + subset_seed,
                                   sweep={"of": settings.run_name, unit: size, "seed": subset_seed}))
    return runs


def learning_rates(settings: RunSettings) -> list[float]:
    """The learning rates a run's search tries: those it lists, or the run's own."""
    rates = settings.search.learning_rate
    return [float(rate) for rate in (rates if rates is not None else [settings.optimization.learning_rate])]


def _searched(method: Literal["finetune", "cpt"], settings: RunSettings, seed: int) -> list[PlannedRun]:
    """One run per learning rate and seed of the search of `settings`: the learning rate replaces the optimization's,
    the seed is added to the Trainer's seed and to the data's."""
    rates, seeds = learning_rates(settings), list(settings.search.seeds)
    runs = []
    for rate in rates:
        for offset in seeds:
            searched = replace(settings, optimization=replace(settings.optimization, learning_rate=rate),
                               data=replace(settings.data, seed=settings.data.seed + offset))
            runs.append(PlannedRun(f"{settings.run_name}-lr{rate:g}-s{offset}", method, searched, seed + offset,
                                   search={"of": settings.run_name, "learning_rate": rate, "seed": offset,
                                           "learning_rates": list(rates), "seeds": list(seeds)}))
    return runs


def check_search(where: str, method: str, settings: RunSettings, sweep: dict[str, SweepSizes], continued: bool
                 ) -> None:
    """Refuse a search of `settings` (`where` names them in messages) that searches nothing, lists no value, a value
    twice or a learning rate its optimization refuses, or that searches a swept run or the CPT run cpt+finetune
    continues (`continued`)."""
    search: Search | None = settings.search
    if search is None:
        return
    where, name = f"{where}.search", settings.run_name
    _check_values(where, "learning_rate", search.learning_rate, "learning_rate: [1e-4, 3e-4, 1e-3]")
    _check_values(where, "seeds", search.seeds, "seeds: [0, 1, 2]")
    for rate in search.learning_rate or []:
        if not rate > 0:
            raise ValueError(f"{where}.learning_rate={search.learning_rate}: learning rates must be positive.")
        try:
            replace(settings.optimization, learning_rate=rate)
        except ValueError as error:
            raise ValueError(f"{where}.learning_rate {rate:g}: {error}") from None
    if any(seed < 0 for seed in search.seeds):
        raise ValueError(f"{where}.seeds={search.seeds}: seeds must be 0 or more (each is added to Compare.seed).")
    rates = learning_rates(settings)
    if len(rates) * len(search.seeds) == 1:
        raise ValueError(
            f"{where}: one learning rate ({rates[0]:g}) and one seed ({search.seeds[0]}) is a single run, nothing to "
            f"search; remove `search`, or list more learning rates or seeds (e.g. {SEARCH_EXAMPLE})."
        )
    swept = next((key for key in (name, method) if key in sweep), None)
    if swept is not None:
        raise ValueError(
            f"{where}: run '{name}' is also swept (Compare.sweep.{swept}); a run is searched or swept, not both: "
            "remove its `search`, or take it out of `sweep` (to sweep data sizes at a searched learning rate, search "
            "first, then set that learning rate in the swept run)."
        )
    if continued:
        raise ValueError(
            f"{where}: cpt+finetune fine-tunes the first CPT run's result, and a search has one result per learning "
            "rate and seed; search another CPT variant (list it second), or drop cpt+finetune."
        )


def _check_values(where: str, key: str, values: list | None, example: str) -> None:
    """Refuse an empty list of a search's values and a value listed twice."""
    if values is None:
        return
    if not values:
        raise ValueError(
            f"{where}.{key} is empty: list the values to try (e.g. {example})"
            + (", or leave it out to search seeds at the run's own learning rate." if key == "learning_rate" else ".")
        )
    repeated = sorted({value for value in values if values.count(value) > 1})
    if repeated:
        raise ValueError(f"{where}.{key}={values}: {repeated} listed more than once; give each value once.")


def check_sweep(methods: list[str], variants: Mapping[str, list[RunSettings]], sweep: dict[str, SweepSizes]) -> None:
    """Refuse sweeps of runs that are not planned, sizes that do not increase, and a size of the wrong kind."""
    runs = {settings.run_name: method for method in TRAINED if method in methods for settings in variants[method]}
    for key, sizes in sweep.items():
        method = runs.get(key) or (key if key in TRAINED and key in methods else None)
        if method is None:
            raise ValueError(
                f"Compare.sweep names '{key}', which is neither a planned run ({', '.join(runs) or 'none'}) nor a "
                "listed method (finetune, cpt)."
            )
        if key in TRAINED and any(runs[name] == key and name != key and name in sweep for name in runs):
            raise ValueError(f"Compare.sweep names both '{key}' and one of its runs; sweep each run once.")
        _check_sizes(key, method, sizes)
    if "cpt+finetune" in methods and sweep_of(sweep, variants["cpt"][0].run_name, "cpt"):
        raise ValueError(
            "Compare: cpt+finetune fine-tunes the first CPT run's result, which is swept; sweep another CPT variant "
            "or drop cpt+finetune."
        )


def _check_sizes(key: str, method: str, sizes: SweepSizes) -> None:
    """Refuse sizes of the other method's kind, none, ones that do not increase, and repeated seeds."""
    wanted = SWEPT_BY[method][0]
    other = next(unit for unit, _, _ in SWEPT_BY.values() if unit != wanted)
    values = getattr(sizes, wanted)
    if getattr(sizes, other) is not None:
        raise ValueError(
            f"Compare.sweep.{key}: {method} runs are swept by `{wanted}` (a list of sizes), not `{other}`."
        )
    if not values:
        raise ValueError(
            f"Compare.sweep.{key}.{wanted} is {'empty' if values == [] else 'not given'}: list the sizes to train "
            f"on, increasing (e.g. {wanted}: [16, 64, 256]), or remove {key} from sweep."
        )
    if any(v < 1 for v in values) or any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"Compare.sweep.{key}.{wanted}={values}: sizes must be positive and increasing.")
    if not sizes.seeds or len(set(sizes.seeds)) < len(sizes.seeds):
        raise ValueError(f"Compare.sweep.{key}.seeds={sizes.seeds}: give one or more different seeds.")
