"""Command line: ``als-spark``, ``python -m als_spark`` and ``spark-submit jobs/*.py``.

Parses arguments, configures logging, gets the session, and calls
:mod:`als_spark.pipeline`. Errors meant for the user are printed as one
paragraph with a documented exit code (see :mod:`als_spark.errors`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, Sequence

from als_spark import __version__
from als_spark.config import INPUT_FORMATS, load_config
from als_spark.errors import AlsSparkError, ConfigError

log = logging.getLogger("als_spark")

_DESCRIPTION = "Implicit-feedback ALS recommendations and similarity tables on Spark."


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 too; keep one message style
        raise ConfigError(f"{self.prog}: {message} (see --help)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", required=True, metavar="DIR", help="directory of the pipeline's tables")
    p.add_argument("--config", metavar="FILE", help="YAML configuration (default: built-in defaults = conf/default.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one configuration key, e.g. --set als.rank=20 (repeatable)")
    p.add_argument("--remote", metavar="URL", help="Spark Connect URL, e.g. sc://localhost:15002 (or set SPARK_REMOTE)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _input(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", metavar="PATH", help="ratings file: u.data, ratings.dat or ratings.csv")
    src.add_argument("--dataset", choices=["synthetic", "ml-100k"],
                     help="built-in data: 'synthetic' (generated, offline) or 'ml-100k' (downloaded once, cached)")
    p.add_argument("--items", metavar="PATH", help="item file with titles (default: u.item/movies.dat/movies.csv beside --input)")
    p.add_argument("--format", choices=INPUT_FORMATS, help="force the ratings format (default: detect; same as --set ingest.format=...)")
    p.add_argument("--synthetic-seed", type=int, default=42, metavar="N", help="seed of --dataset synthetic (default 42)")
    p.add_argument("--synthetic-ratings", type=int, default=100_000, metavar="N",
                   help="size of --dataset synthetic, e.g. 1000000 or 20000000 (MovieLens-shaped; default 100000)")


def _holdout(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-holdout", dest="holdout", action="store_false",
                   help="no holdout: compare scores no configuration; converge fits on all interactions and scores nothing")
    p.add_argument("--test-fraction", type=float, default=0.25, help="share of each user's interactions held out (default 0.25)")
    p.add_argument("--split-seed", type=int, default=42, help="seed of the per-user random holdout split (default 42)")


def _focus_args(p: argparse.ArgumentParser) -> None:
    for kind in ("user", "item"):
        p.add_argument(f"--{kind}-id", type=int, action="append", default=[], metavar="ID",
                       help=f"print this {kind}'s lists under every fit: the {kind} id of the input file (repeatable)")
        p.add_argument(f"--{kind}-index", type=int, action="append", default=[], metavar="I",
                       help=f"the same by zero-based index into the sorted distinct {kind} ids with a rating >= "
                       f"ingest.min_rating, as a notebook's category codes or matrix rows count (repeatable)")


def _progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress-interval", type=float, default=30.0, metavar="SECONDS",
                   help="log each fit's progress and remaining time this often (default 30; 0: never)")


def _focus(args: argparse.Namespace) -> list[Any]:
    from als_spark.compare import Focus

    return [Focus(kind, **{key: value}) for kind in ("user", "item") for key in ("id", "index")
            for value in getattr(args, f"{kind}_{key}")]


def _iterations(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--iterations must be comma-separated integers, e.g. 15,50,100; got {text!r}") from None
    if len(set(counts)) < 2 or min(counts) < 1:
        raise ConfigError(f"--iterations needs at least two distinct positive counts, e.g. 15,50,100; got {text!r}")
    return sorted(set(counts))


def _names(args: argparse.Namespace) -> tuple[str, str]:
    from pathlib import Path

    names = [getattr(args, f"name_{s}") or (Path(getattr(args, f"config_{s}")).stem if getattr(args, f"config_{s}") else s.upper())
             for s in ("a", "b")]
    if names[0] == names[1]:
        names = [f"{names[0]} ({s.upper()})" for s in ("a", "b")]
    return names[0], names[1]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="als-spark", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"als-spark {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    stages = {
        "run": "the whole pipeline: ingest, train, recommend, similar",
        "ingest": "read and validate ratings; write ratings, interactions, dataset_summary, items",
        "train": "fit ALS on DIR/interactions; write model, user_factors, item_factors",
        "recommend": "write DIR/recommendations from the factors, excluding seen items",
        "similar": "write DIR/similar_items and DIR/similar_users from the factors",
    }
    for name, text in stages.items():
        p = sub.add_parser(name, help=text, description=text)
        if name in ("run", "ingest"):
            _input(p)
        _common(p)
    ev = sub.add_parser("evaluate", help="hold-out evaluation of the configuration against popularity and random baselines",
                        description="split each user's interactions into train and test, fit on train, and score "
                        "precision, recall, NDCG, MAP and hit rate @k plus catalogue coverage; writes DIR/metrics and DIR/metrics.md")
    _input(ev)
    _common(ev)
    ev.add_argument("--k", type=int, default=10, help="list length scored (default 10)")
    ev.add_argument("--test-fraction", type=float, default=0.25, help="share of each user's interactions held out (default 0.25)")
    ev.add_argument("--split", choices=["random", "chronological"], default="random",
                    help="random per-user holdout (default) or each user's latest interactions")
    ev.add_argument("--split-seed", type=int, default=42, help="seed of the random split (default 42)")
    ev.add_argument("--exclude", choices=["train", "rated"], default="train",
                    help="items left out of every scored list: the user's train interactions (default, the standard "
                    "protocol) or every item the user rated at any value outside the test set, as recommend.exclude: "
                    "rated serves them (chronological split: only ratings before the user's first test item)")
    tu = sub.add_parser("tune", help="search ALS hyper-parameters on a validation split of train; test the best once",
                        description="grid or random search (a --spec YAML, e.g. conf/tune.yaml) over als.rank, "
                        "als.reg_param, als.alpha, als.max_iter, ingest.confidence and recommend.popularity_weight, "
                        "scored by a ranking metric @k on a "
                        "per-user validation split cut from the train side of the test split; the best configuration "
                        "alone is then scored on the test split. Writes DIR/leaderboard, DIR/best.yaml (for --config), "
                        "DIR/tune.png, DIR/test_metrics and DIR/tune.json")
    _input(tu)
    _common(tu)
    tu.add_argument("--spec", required=True, metavar="FILE", help="search spec YAML (see conf/tune.yaml)")
    tu.add_argument("--k", type=int, default=10, help="list length scored (default 10)")
    tu.add_argument("--test-fraction", type=float, default=0.25,
                    help="share of each user's interactions held out as test, and of the rest as validation (default 0.25)")
    tu.add_argument("--split-seed", type=int, default=42, help="seed of the test split; the validation split uses seed + 1 (default 42)")
    tu.add_argument("--compare", action="append", default=[], metavar="NAME=FILE",
                    help="also score this configuration on the test split, e.g. seed-notebook=conf/seed-notebook.yaml (repeatable)")
    tu.add_argument("--no-test", action="store_true", help="search only: do not score the best configuration on the test split")
    cmp = sub.add_parser("compare", help="do two configurations give different lists, beyond what the seed alone changes?",
                         description="fit configurations A and B with several seeds each; compare every pair of fits' "
                         "similar-user, similar-item and recommendation lists (Jaccard@k, rank-biased overlap) within A, "
                         "within B and between; test per table whether A and B differ beyond seed noise. Also scores "
                         "each configuration on a holdout and times it per iteration. Writes DIR/agreement (per user "
                         "and item), DIR/agreement_pairs, DIR/compare.md, DIR/compare.json and DIR/compare.png")
    _input(cmp)
    _common(cmp)
    for side in ("a", "b"):
        X = side.upper()
        cmp.add_argument(f"--config-{side}", metavar="FILE", help=f"YAML configuration of {X} (default: --config)")
        cmp.add_argument(f"--set-{side}", action="append", default=[], metavar="KEY=VALUE",
                         help=f"override one key of {X} only, after --config-{side} and --set (repeatable)")
        cmp.add_argument(f"--name-{side}", metavar="NAME", help=f"name of {X} in the report (default: the stem of --config-{side}, else {X})")
    cmp.add_argument("--seeds", type=int, default=3, metavar="N",
                     help="fits per configuration, seeds als.seed, als.seed + 1, ... (default 3; >= 2)")
    cmp.add_argument("--k", type=int, default=5, help="neighbours per user and item compared (default 5)")
    cmp.add_argument("--top-n", type=int, default=10, help="recommendations per user compared (default 10)")
    cmp.add_argument("--alpha", type=float, default=0.05, help="significance level of the verdict (default 0.05)")
    _holdout(cmp)
    _focus_args(cmp)
    _progress(cmp)
    cv = sub.add_parser("converge", help="fit one configuration at several iteration counts; how much do the lists and metric still move?",
                        description="fit the configuration at each of --iterations (same seed) plus once more with the "
                        "next seed at the largest count; report how the similar-user, similar-item and recommendation "
                        "lists and the holdout NDCG change from one count to the next, against the largest count, and "
                        "against the seed noise. Writes DIR/converge_steps, DIR/converge_fits, DIR/converge.md, "
                        "DIR/converge.json and DIR/converge.png")
    _input(cv)
    _common(cv)
    cv.add_argument("--iterations", required=True, metavar="N,N,...", help="iteration counts, e.g. 15,50,100,200,400")
    cv.add_argument("--k", type=int, default=5, help="neighbours per user and item compared (default 5)")
    cv.add_argument("--top-n", type=int, default=10, help="recommendations per user compared and scored (default 10)")
    cv.add_argument("--no-seed-reference", action="store_true", help="skip the second seed at the largest count")
    _holdout(cv)
    _focus_args(cv)
    _progress(cv)
    bench = sub.add_parser("bench", help="benchmark als-spark against the tutorial pipeline and the implicit library",
                           description="run als-spark, the naive tutorial pipeline and (if installed) the implicit "
                           "library side by side on the same data; writes DIR/bench.json and DIR/bench.md")
    _input(bench)
    _common(bench)
    bench.add_argument("--repeat", type=int, default=3, help="runs per system; medians are reported (default 3)")
    bench.add_argument("--systems", default="als-spark,naive,implicit",
                       help="comma-separated subset of als-spark,naive,implicit (default: all)")
    doctor = sub.add_parser("doctor", help="check Java, Spark, Python, pandas/pyarrow and the BLAS Spark loads",
                            description="check Java, Spark, Python, pandas/pyarrow and the BLAS Spark loads")
    doctor.add_argument("--remote", metavar="URL", help="Spark Connect URL")
    doctor.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    show = sub.add_parser("show", help="print one user's recommendations and neighbours, or one item's neighbours",
                          description="print one user's recommendations and similar users, or one item's similar items, from DIR")
    show.add_argument("--output", required=True, metavar="DIR", help="directory written by `als-spark run`")
    who = show.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", type=int, metavar="USER_ID", help="a user id from the input file")
    who.add_argument("--item", type=int, metavar="ITEM_ID", help="an item id from the input file")
    show.add_argument("--remote", metavar="URL", help="Spark Connect URL")
    show.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    gen = sub.add_parser("synthesize", help="write the synthetic dataset as u.data and u.item",
                         description="write the synthetic dataset as u.data and u.item")
    gen.add_argument("--output", required=True, metavar="DIR")
    gen.add_argument("--ratings", type=int, default=100_000, metavar="N", help="number of ratings (default 100000)")
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def _print_summary(result: dict[str, Any]) -> None:
    counts = result.get("counts", {})
    print(f"\nals-spark {result['command']} finished (run {result['run_id']})")
    if "interactions" in counts:
        print(f"  interactions: {counts['interactions']:,} from {counts.get('users', '?'):,} users and "
              f"{counts.get('items', '?'):,} items ({counts.get('rows_rejected', 0):,} rows rejected)")
    for name, path in result.get("outputs", {}).items():
        print(f"  {name:<16} {path}")
    timings = result.get("timings_seconds", {})
    if timings:
        print("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))


def _dispatch(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.command == "synthesize":
        from als_spark import synthetic

        path = synthetic.write_movielens(synthetic.generate_for_size(args.ratings, seed=args.seed), args.output)
        print(f"wrote {path}/u.data and {path}/u.item")
        return None

    if args.command == "doctor":
        from als_spark import runinfo
        from als_spark.session import get_spark

        problems = runinfo.doctor(get_spark(remote=args.remote))
        return None if not problems else _fail(problems)

    if args.command == "show":
        from als_spark import pipeline
        from als_spark.session import get_spark

        for title, table in pipeline.show(get_spark(remote=args.remote), args.output, user=args.user, item=args.item):
            print(f"\n{title}")
            print(table.to_string(index=False) if len(table) else "  (none)")
        return None

    overrides = list(args.overrides)
    if getattr(args, "format", None):
        overrides.append(f"ingest.format={args.format}")
    cfg = load_config(args.config, overrides)
    if args.command == "tune":  # read the spec and the compared configurations before starting Spark
        from als_spark import tune

        spec, compare = tune.load_spec(args.spec), _compare_configs(args.compare)
    if args.command == "compare":  # both configurations, the seeds and the focus ids are checked before Spark starts
        from als_spark import compare as cmp

        cfg_b = load_config(args.config_b or args.config, overrides + args.set_b)
        cfg = load_config(args.config_a or args.config, overrides + args.set_a)
        cmp.check_comparable(cfg, cfg_b)
        cmp.seed_lists(cfg, cfg_b, args.seeds)
        if not 0 < args.alpha < 1:
            raise ConfigError(f"--alpha must be strictly between 0 and 1, got {args.alpha}")
        focus = _focus(args)
    if args.command == "converge":
        iterations, focus = _iterations(args.iterations), _focus(args)

    from als_spark import pipeline
    from als_spark.session import get_spark

    # bench keeps the JVM's default JIT: its repeats warm one JVM anyway, and the quick JIT would
    # slow the naive pipeline's cross joins it compares against (ML-100k similar_items 20.7 s vs 12.1 s).
    spark = get_spark(remote=args.remote, input_bytes=None if args.command == "bench" else _input_bytes(args))
    if args.command in ("run", "ingest", "evaluate", "bench", "tune", "compare", "converge"):
        source = pipeline.Source(
            path=args.input, dataset=args.dataset, items=args.items,
            synthetic_seed=args.synthetic_seed, synthetic_ratings=args.synthetic_ratings,
        )
    if args.command == "bench":
        from als_spark import bench

        systems = tuple(x.strip() for x in args.systems.split(",") if x.strip())
        unknown = set(systems) - {"als-spark", "naive", "implicit"}
        if unknown or "als-spark" not in systems:
            raise ConfigError(f"--systems must include als-spark and only als-spark, naive, implicit; got {args.systems!r}")
        report = bench.run_bench(spark, source, cfg, repeat=args.repeat, systems=systems)
        os.makedirs(args.output, exist_ok=True)
        with open(os.path.join(args.output, "bench.json"), "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2, default=str)
        text = bench.markdown(report)
        with open(os.path.join(args.output, "bench.md"), "w", encoding="utf-8") as fh:
            fh.write(text)
        print("\n" + text)
        return None
    if args.command == "tune":
        result = pipeline.stage_tune(
            spark, source, cfg, args.output, spec=spec, k=args.k, test_fraction=args.test_fraction,
            seed=args.split_seed, compare=compare, evaluate_test=not args.no_test,
        )
        best = result["best"]
        print(f"\nbest: trial {best['trial']}, validation {result['metric']}@{args.k} = {best['objective']:.4f}; "
              f"{args.output}/best.yaml is usable with --config")
        if result["test_metrics"]:
            print("\n" + pipeline.metrics_markdown(result["test_metrics"]))
        return result
    if args.command == "compare":
        result = pipeline.stage_compare(
            spark, source, cfg, cfg_b, args.output, names=_names(args), seeds=args.seeds, k=args.k, top_n=args.top_n,
            focus=focus, holdout=args.holdout, test_fraction=args.test_fraction, split_seed=args.split_seed,
            alpha=args.alpha, progress_interval=args.progress_interval,
        )
        print("\n" + result["report"].split("\n## Agreement of every pair")[0].rstrip())
        print(f"\n(every pair of fits: {args.output}/compare.md)")
        return result
    if args.command == "converge":
        result = pipeline.stage_converge(
            spark, source, cfg, args.output, iterations=iterations, k=args.k, top_n=args.top_n, focus=focus,
            holdout=args.holdout, test_fraction=args.test_fraction, split_seed=args.split_seed,
            seed_reference=not args.no_seed_reference, progress_interval=args.progress_interval,
        )
        print("\n" + result["report"].rstrip())
        return result
    if args.command == "evaluate":
        result = pipeline.stage_evaluate(
            spark, source, cfg, args.output, k=args.k, test_fraction=args.test_fraction, split=args.split,
            seed=args.split_seed, exclude=args.exclude,
        )
        print("\n" + pipeline.metrics_markdown(result["metrics"]))
        return result
    if args.command in ("run", "ingest"):
        if args.command == "run":
            return pipeline.run_all(spark, source, cfg, args.output)
        return pipeline.stage_ingest(spark, source, cfg, args.output)
    stage = {"train": pipeline.stage_train, "recommend": pipeline.stage_recommend, "similar": pipeline.stage_similar}
    return stage[args.command](spark, cfg, args.output)


def _compare_configs(texts: Sequence[str]) -> dict[str, Any]:
    """``--compare NAME=FILE`` options as ``{name: Config}``."""
    compare = {}
    for text in texts:
        name, sep, path = text.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(f"--compare expects NAME=FILE, got {text!r}")
        compare[name.strip()] = load_config(path.strip())
    return compare


class _DoctorFailed(AlsSparkError):
    exit_code = 5


def _fail(problems: list[str]) -> None:
    raise _DoctorFailed("doctor found problems:\n  - " + "\n  - ".join(problems))


#: Bytes per rating line of MovieLens-shaped text (u.data averages 19.8), to size generated data.
_BYTES_PER_RATING = 20


def _input_bytes(args: argparse.Namespace) -> int | None:
    """The size of the command's ratings input when it is known before Spark starts, else ``None``.

    A local file or directory (its files): the bytes on disk; ``--dataset ml-100k``: u.data's
    size; ``--dataset synthetic``: the ratings it will generate at 20 bytes each. Remote paths
    (``s3://``, ``dbfs:/`` ...) and commands without an input are ``None``.
    """
    dataset = getattr(args, "dataset", None)
    if dataset == "ml-100k":
        from als_spark.datasets import ML_100K_U_DATA_BYTES

        return ML_100K_U_DATA_BYTES
    if dataset == "synthetic":
        return int(args.synthetic_ratings) * _BYTES_PER_RATING
    path = getattr(args, "input", None)
    from als_spark.publish import local_path

    local = local_path(path) if path else None
    if local is None:
        return None
    try:
        if os.path.isdir(local):
            return sum(entry.stat().st_size for entry in os.scandir(local) if entry.is_file())
        return os.path.getsize(local)
    except OSError:
        return None  # missing: ingest reports it with its own message


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    try:
        args = build_parser().parse_args(argv)
    except AlsSparkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        result = _dispatch(args)
    except AlsSparkError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return exc.exit_code
    if result is not None:
        _print_summary(result)
    return 0


def entry_point() -> None:
    """Console-script entry point (``als-spark``)."""
    try:
        sys.exit(main())
    except BrokenPipeError:  # `als-spark show ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
