"""The `recsys` command line. Every flag can also be set by the environment variable shown
in `--help`; Beam's own flags (e.g. `--runner DataflowRunner --project ...`) pass through
`recsys nightly` after `--`. An error prints one line and exits with 1; `--log-level DEBUG`
shows its traceback and every library's logging (app/console.py)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile

import click

from app import console
from app.canary_cli import canary
from app.experiments_cli import experiment
from batch import options as nightly_options

CONTEXT = {"show_default": True, "max_content_width": 100}


def _opt(*names, envvar: str, **kwargs):
    return click.option(*names, envvar=envvar, show_envvar=True, **kwargs)


def _write_json(path: str | None, obj: dict) -> None:
    text = json.dumps(obj, indent=1, default=str)
    click.echo(text)
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")


@click.group(cls=console.OneLineErrors, context_settings=CONTEXT)
@_opt("--log-level", envvar="RECSYS_LOG_LEVEL", default="INFO",
      type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
      help="Logging level of recsys's own lines; libraries log only warnings and errors "
           "below DEBUG; DEBUG also shows an error's traceback.")
@click.pass_context
def main(ctx: click.Context, log_level: str) -> None:
    """recsys: nightly-precomputed recommendations served in milliseconds."""
    console.configure(log_level)
    ctx.meta["recsys.log_level"] = log_level


def _debug(ctx: click.Context) -> bool:
    return ctx.meta.get("recsys.log_level") == "DEBUG"


def _quiet_libraries(ctx: click.Context) -> contextlib.AbstractContextManager:
    """For the work of the commands that load TensorFlow, LiteRT or Beam workers: their
    start-up lines on stderr filtered out (not under DEBUG). The command prints its result
    after the block, once every line of the block has reached stderr."""
    return contextlib.nullcontext() if _debug(ctx) else console.stderr_noise_filtered()


def _nightly_flags(command):
    """The nightly job's flags, generated from its config's fields (batch/options.py): dashed,
    with their environment variables and the defaults `python -m batch.nightly` has."""
    for f in reversed(nightly_options.fields()):  # click lists the last decorator first
        meta, kwargs = f.metadata, {"help": _dashed_help(f)}
        if meta["type"] is bool:
            kwargs["is_flag"] = True
        elif f.default is nightly_options.REQUIRED:
            kwargs.update(required=True, type=meta["type"])
        else:
            kwargs.update(default=f.default, type=click.Choice(meta["choices"])
                          if meta["choices"] else meta["type"])
        command = _opt(f"--{f.name.replace('_', '-')}", f.name,
                       envvar=nightly_options.envvar(f), **kwargs)(command)
    return command


def _dashed_help(f) -> str:
    """A flag's help with its underscored names turned into `recsys nightly`'s dashed ones."""
    return _dashed(f.metadata["help"])


def _dashed(text: str) -> str:
    """`text` with the nightly's flags as `recsys nightly` spells them (`--shard_size` ->
    `--shard-size`); Beam's own flags, which pass through after `--`, keep their underscores."""
    names = {f.name for f in nightly_options.fields()}
    return re.sub(r"--(\w+)", lambda m: "--" + m.group(1).replace("_", "-")
                  if m.group(1) in names else m.group(0), text)


@main.command(context_settings={**CONTEXT, "ignore_unknown_options": True})
@_nightly_flags
@_opt("--runner", envvar="RECSYS_RUNNER", default=nightly_options.DEFAULT_RUNNER,
      help="Beam runner: FnApiRunner (local, named explicitly: Beam's DirectRunner first "
           "tries to download Prism), DataflowRunner, FlinkRunner, PortableRunner, ...")
@_opt("--json", "json_path", envvar="RECSYS_SUMMARY_JSON", default=None,
      help="Also write the run summary to this file.")
@click.argument("beam_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def nightly(ctx, runner, json_path, beam_args, **flags) -> None:
    """Validate, train, export the bundle, precompute top-K and publish to Redis."""
    argv = [*nightly_options.to_argv(flags), f"--runner={runner}", *beam_args]
    try:
        with _quiet_libraries(ctx):
            from batch.nightly import run

            summary = run(argv)
    except Exception as error:
        if _debug(ctx):
            raise
        raise click.ClickException(_dashed(console.one_line(error))) from None
    _write_json(json_path, summary)


@main.command(context_settings=CONTEXT)
@_opt("--store", envvar="RECSYS_STORE", default="./artifacts",
      help="Artifact store holding the bundles.")
@_opt("--redis-url", envvar="REDIS_URL", required=True, help="Redis holding the lists.")
@_opt("--namespace", envvar="RECSYS_NAMESPACE", default="recsys", help="Redis key prefix.")
@_opt("--api-key", envvar="RECSYS_API_KEY", default=None,
      help="Key required in X-API-Key by the events endpoint (unset: no key needed).")
@_opt("--host", envvar="HOST", default="127.0.0.1", help="Address to listen on.")
@_opt("--port", envvar="PORT", default=8080, type=int, help="Port to listen on.")
def serve(store, redis_url, namespace, api_key, host, port) -> None:
    """Serve /recommend, /events and /health with functions-framework's HTTP server.

    Its gunicorn workers (WORKERS, THREADS) share one /metrics: their values go to a fresh
    folder (PROMETHEUS_MULTIPROC_DIR, made here, removed when the server stops) that a scrape
    adds up (functions/metrics.py)."""
    os.environ.update({"RECSYS_STORE": store, "REDIS_URL": redis_url,
                       "RECSYS_NAMESPACE": namespace})
    if api_key:
        os.environ["RECSYS_API_KEY"] = api_key
    owner, folder = os.getpid(), tempfile.mkdtemp(prefix="recsys-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder  # before prometheus_client is imported
    try:
        import functions_framework
        from functions_framework._http import create_server

        from functions.metrics import worker_exited

        source = os.path.join(os.path.dirname(os.path.dirname(__file__)), "functions", "main.py")
        app = functions_framework.create_app("router", source)
        click.echo(f"serving on http://{host}:{port} (recommend, events, health)", err=True)
        create_server(app, debug=False, child_exit=worker_exited).run(host, port)
    finally:
        if os.getpid() == owner:  # a gunicorn worker leaves through here too: not its folder
            shutil.rmtree(folder, ignore_errors=True)


@main.command(context_settings=CONTEXT)
@_opt("--workdir", envvar="RECSYS_DEMO_DIR", default="./recsys-demo",
      help="Folder for the generated data and the artifact store.")
@_opt("--users", envvar="RECSYS_DEMO_USERS", default=1000, type=int, help="Generated users.")
@_opt("--items", envvar="RECSYS_DEMO_ITEMS", default=500, type=int, help="Generated items.")
@_opt("--seed", envvar="RECSYS_DEMO_SEED", default=0, type=int, help="Generator seed.")
@_opt("--redis-url", envvar="REDIS_URL", default=None,
      help="Existing Redis; unset starts a local redis-server for the demo.")
@_opt("--port", envvar="RECSYS_DEMO_PORT", default=0, type=int,
      help="Port of the demo server (0: a free one).")
@_opt("--json", "json_path", envvar="RECSYS_DEMO_JSON", default=None,
      help="Also write the demo's result to this file.")
@click.pass_context
def demo(ctx, workdir, users, items, seed, redis_url, port, json_path) -> None:
    """Generate data, run the nightly job, serve, ask for a warm and a fresh user."""
    with _quiet_libraries(ctx):
        from app.demo import run_demo

        result = run_demo(workdir, users, items, seed, redis_url, port)
    for who in ("warm", "fresh"):
        r = result[who]
        click.echo(f"{who} user {r['user_id']}: source={r['source']} "
                   f"latency={r['latency_ms']} ms items={' '.join(r['items'])}", err=True)
    ndcg = result["ndcg@10"]
    click.echo("offline NDCG@10 on a temporal holdout: " + ", ".join(
        f"{name} {value:.4f}" for name, value in ndcg.items()), err=True)
    _write_json(json_path, result)


class _EvaluateCommand(click.Command):
    """`recsys evaluate`, whose help lists the models of evaluation/registry.py; the registry
    (it imports TensorFlow) is loaded only when the help is shown."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with console.stderr_noise_filtered():
            from evaluation.registry import MODEL_REGISTRY
        formatter.write_paragraph()
        formatter.write_text("Models (--models): " + ", ".join(MODEL_REGISTRY) + ".")
        super().format_epilog(ctx, formatter)


@main.command(cls=_EvaluateCommand, context_settings=CONTEXT)
@_opt("--dataset", "datasets", envvar="RECSYS_DATASET", required=True, multiple=True,
      help="csv:PATH or parquet:PATH: what `recsys nightly --input` takes, a folder in the "
           "input layout (interactions.*, optional users.*, items.*; docs/SCHEMA.md, \"The "
           "input folder\"; `recsys sample-data DIR` writes one) or a file or glob; "
           "movielens:PATH; or synthetic:users=N,items=M,seed=S. Repeat it (or separate "
           "specs by commas) for several datasets in one report: a table each, then a summary.")
@_opt("--protocol", envvar="RECSYS_EVAL_PROTOCOL", default="th",
      type=click.Choice(["th", "loo-sampled"]),
      help="th: temporal holdout (warm and fresh users; what we tune and gate on). "
           "loo-sampled: each user's latest item ranked among 99 sampled negatives (HR@10, "
           "NDCG@10; the NCF papers' protocol, to compare with published figures).")
@_opt("--models", envvar="RECSYS_MODELS", default="popularity,recent_popularity,item_knn,mf",
      help="Comma-separated models to evaluate (listed below). Peers: ease, and als and bpr "
           "with `pip install 'recsys[peers]'`.")
@_opt("--task", envvar="RECSYS_EVAL_TASK", default="recommend",
      type=click.Choice(["recommend", "next-item"]),
      help="recommend: the models above under --protocol. next-item: /similar's task (given "
           "an item a user took, is their next item among its top 10?) for the neighbour "
           "variants of models/next_item.py beside a co-occurrence baseline; --models and "
           "--protocol do not apply.")
@_opt("--json", "json_path", envvar="RECSYS_EVAL_JSON", default=None,
      help="Write the results to this JSON file.")
@_opt("--report", "report_dir", envvar="RECSYS_EVAL_REPORT", default=None,
      help="Write report.md (what warm, fresh and the cutoff are, which model to ship, the "
           "table) and a plot to this folder.")
@click.pass_context
def evaluate(ctx, datasets, protocol, models, task, json_path, report_dir) -> None:
    """Offline evaluation of the given models. Temporal holdout (default): trained on the
    events before the cutoff, scored on warm users (seen before it) and fresh ones (first seen
    after it); loo-sampled: each user's latest item among 99 sampled negatives. The
    protocols: models/evaluation.py, models/evaluation_loo.py; our figures:
    docs/EVALUATION_RESULTS.md."""
    if task == "next-item":
        _next_item(ctx, datasets, json_path)
        return
    with _quiet_libraries(ctx):
        from evaluation.registry import resolve_models
        from evaluation.run import run_evaluation, split_specs
        from infra.datasets import load_dataset

        names = [m for m in models.split(",") if m]
        try:
            resolve_models(names)  # before loading the dataset: a wrong name fails at once
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--models") from None
        loaded = [load_dataset(spec) for spec in split_specs(datasets)]  # all before any fit
        report = run_evaluation(loaded[0] if len(loaded) == 1 else loaded, names, json_path,
                                report_dir, protocol=protocol)
    click.echo(json.dumps(report, indent=1))


def _next_item(ctx, datasets, json_path) -> None:
    """`recsys evaluate --task next-item`: models/next_item.py on each dataset."""
    with _quiet_libraries(ctx):
        from evaluation.run import split_specs
        from infra.datasets import load_dataset
        from models.next_item import next_item_report

        reports = [next_item_report(d.interactions, d.users, d.items, d.name)
                   for d in (load_dataset(spec) for spec in split_specs(datasets))]
    report = reports[0] if len(reports) == 1 else {"datasets": reports}
    _write_json(json_path, report)  # printed, and written to --json


@main.command("sample-data", context_settings=CONTEXT)
@click.argument("out")
@_opt("--users", envvar="RECSYS_SAMPLE_USERS", default=1000, type=int, help="Users.")
@_opt("--items", envvar="RECSYS_SAMPLE_ITEMS", default=500, type=int, help="Items.")
@_opt("--seed", envvar="RECSYS_SAMPLE_SEED", default=0, type=int, help="Seed.")
@_opt("--format", "fmt", envvar="RECSYS_SAMPLE_FORMAT", default="csv",
      type=click.Choice(["csv", "parquet"]), help="File format of the three tables.")
def sample_data(out, users, items, seed, fmt) -> None:
    """Write a synthetic dataset in the input layout: OUT/interactions.csv, users.csv,
    items.csv (--format parquet: .parquet), items with one to two '|'-separated categories
    (docs/SCHEMA.md, "Synthetic data")."""
    from app.sample_data import write_sample

    for name, table in write_sample(out, users, items, seed, fmt).items():
        click.echo(f"{table['path']}: {table['rows']} {name}")


@main.command(context_settings=CONTEXT)
@_opt("--redis-url", envvar="REDIS_URL", required=True, help="Redis holding the lists.")
@_opt("--namespace", envvar="RECSYS_NAMESPACE", default="recsys", help="Redis key prefix.")
@_opt("--json", "as_json", envvar="RECSYS_VERSIONS_JSON", is_flag=True,
      help="Print every version's whole run summary as JSON instead of the table.")
def versions(redis_url, namespace, as_json) -> None:
    """List the published versions, oldest first, `*` marking the one served: a table of
    their run summaries (`--json`: the summaries whole)."""
    from infra.redis.builds import BuildRecords
    from infra.redis.lists import ServedLists

    lists = ServedLists.from_url(redis_url, namespace)
    builds = BuildRecords(lists.r, namespace)
    current, published = _redis(lambda: (lists.current(), lists.versions()), "nothing was read")
    rows = [{"version": v, "current": v == current, "summary": builds.summary(v)}
            for v in published]
    click.echo(json.dumps(rows, indent=1) if as_json else console.versions_table(rows))


@main.command(context_settings=CONTEXT)
@click.argument("version")
@_opt("--redis-url", envvar="REDIS_URL", required=True, help="Redis holding the lists.")
@_opt("--namespace", envvar="RECSYS_NAMESPACE", default="recsys", help="Redis key prefix.")
def rollback(version, redis_url, namespace) -> None:
    """Point `current` back at an earlier published VERSION, in one step."""
    from infra.redis.lists import ServedLists

    ServedLists.from_url(redis_url, namespace).rollback(version)
    click.echo(f"current -> {version}")


@main.command(context_settings=CONTEXT)
@_opt("--redis-url", envvar="REDIS_URL", required=True, help="Redis holding the lists.")
@_opt("--namespace", envvar="RECSYS_NAMESPACE", default="recsys", help="Redis key prefix.")
@_opt("--unavailable", envvar="RECSYS_ITEMS_UNAVAILABLE", multiple=True,
      help="Item id never to recommend again until marked available (repeatable; in the "
           "environment variable: ids separated by spaces).")
@_opt("--available", envvar="RECSYS_ITEMS_AVAILABLE", multiple=True,
      help="Item id to recommend again (repeatable; as --unavailable).")
@_opt("--category", "categories", envvar="RECSYS_ITEMS_CATEGORY", multiple=True,
      help="ITEM_ID=CATEGORY, the item's category for ?category= filters; several "
           "'|'-separated, ITEM_ID='Comedy|Drama' (repeatable).")
@_opt("--items", "items_path", envvar="RECSYS_ITEMS_FILE", default=None,
      help="Items table (.parquet/.csv, local or s3://): item_id, and category ('|'-separated "
           "when several) and/or available (true/false; an empty cell changes nothing); "
           "docs/SCHEMA.md.")
@_opt("--dry-run", envvar="RECSYS_ITEMS_DRY_RUN", is_flag=True,
      help="Validate and print what would change; write nothing.")
def items(redis_url, namespace, unavailable, available, categories, items_path,
          dry_run) -> None:
    """Mark items unavailable or available again and set their categories (what
    POST /admin/items does), all in one transaction; the functions apply it on their next
    request. Without changes: print the current item filters."""
    from infra.items_admin import ItemChanges, ItemsError, add_flags, add_table, read_items_table
    from infra.redis.item_filters import ItemFilters
    from models.schema import SchemaError

    filters = ItemFilters.from_url(redis_url, namespace)
    if not (unavailable or available or categories or items_path):
        rev, off, category = _redis(filters.read, "nothing was read")
        click.echo(json.dumps({"rev": rev, "unavailable": sorted(off),
                               "categories": len(category)}, indent=1))
        return
    changes = ItemChanges()
    add_flags(changes, unavailable, available, categories)
    try:
        if items_path:
            add_table(changes, items_path, read_items_table(items_path))
        changes.check()
    except (ItemsError, SchemaError) as e:
        raise click.ClickException(str(e)) from None
    arguments = changes.arguments()
    counts = {name: len(value) for name, value in arguments.items()}
    if dry_run:
        click.echo(json.dumps({"dry_run": True, **counts}, indent=1))
        return
    rev = _redis(lambda: filters.update(**arguments),
                 "the change is not confirmed: run the same command again (it is idempotent)")
    click.echo(json.dumps({"rev": rev, **counts}, indent=1))


def _redis(call, consequence: str):
    """call(), with a Redis error turned into a message instead of a traceback."""
    import redis

    try:
        return call()
    except redis.RedisError as e:
        raise click.ClickException(f"Redis error ({e}); {consequence}. Check --redis-url "
                                   "(REDIS_URL) and that Redis is reachable from here.") from None


main.add_command(experiment)  # recsys experiment …: app/experiments_cli.py
main.add_command(canary)  # recsys canary check: app/canary_cli.py

if __name__ == "__main__":
    sys.exit(main())
