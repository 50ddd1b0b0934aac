"""The ``deepnotes`` command line.

    deepnotes list                              the labs
    deepnotes run LAB [--flag value ...]        train + evaluate + report (every config field is a flag)
    deepnotes eval RUN_DIR [--data NAME|PATH]   evaluate a finished run
    deepnotes report RUN_DIR                    re-render a run's report
    deepnotes sample RUN_DIR --prompt TEXT      continue a prompt with a language-model run
    deepnotes data list | info NAME | build NAME

A user's mistake (unknown lab, bad flag value, missing dataset, unreadable file) prints one line
``deepnotes: error: ...`` with the fix and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, Sequence

from deepnotes import __version__
from deepnotes.errors import UserError

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``PROG: error: ... (see PROG --help)``), exit status 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ----------------------------------------------------------------------------------- config flags
from deepnotes.experiment.config import flag as _flag  # noqa: E402  (--batch-size for batch_size)


def _field_parser(tp: Any, flag: str):
    """An argparse ``type=`` callable for a dataclass field type, with a clear error."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # Optional[X]
        inner = [a for a in typing.get_args(tp) if a is not type(None)][0]
        base = _field_parser(inner, flag)
        return lambda s: None if s.lower() in ("", "none") else base(s)
    if origin is tuple:
        item = typing.get_args(tp)[0]

        def parse_tuple(s: str):
            try:
                return tuple(item(v) for v in s.split(",") if v.strip())
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected comma-separated {item.__name__} values, e.g. 32,64,128")

        return parse_tuple
    if tp in (int, float, str):
        def parse(s: str):
            try:
                return tp(s)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected {'an' if tp is int else 'a'} {tp.__name__}, got {s!r}")

        parse.__name__ = tp.__name__
        return parse
    return str


def add_config_flags(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """One flag per dataclass field, with its default and help text; ``Literal`` fields get choices."""
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        tp = hints[f.name]
        help_text = f.metadata.get("help", "").replace("%", "%%")  # argparse %-formats help: "63.7%" must stay text
        default = f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        shown = str(shown).replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
            kwargs["help"] = f"{help_text} (default: {'on' if default else 'off'})"
        elif typing.get_origin(tp) is typing.Literal:
            kwargs["choices"] = list(typing.get_args(tp))
            kwargs["help"] = f"{help_text} (default: {shown})"
        else:
            kwargs["type"] = _field_parser(tp, _flag(f.name))
            kwargs["metavar"] = f.name.upper()
            kwargs["help"] = f"{help_text} (default: {shown})"
        parser.add_argument(_flag(f.name), **kwargs)


# ----------------------------------------------------------------------------------- commands
def cmd_list(_args) -> int:
    from deepnotes.experiment import all_labs

    labs = all_labs()
    width = max(len(lab.name) for lab in labs)
    for lab in labs:
        print(f"{lab.name:<{width}}  dataset {lab.default_dataset}, metric {lab.metric}: {lab.summary} [{lab.source}]")
    return 0


def _preset_flag(name: str, value) -> str:
    """A preset's value as the command line would give it: ``--models a,b``, ``--binarize`` / ``--no-binarize``."""
    if isinstance(value, bool):
        return _flag(name) if value else "--no-" + _flag(name)[2:]
    if isinstance(value, (tuple, list)):
        return f"{_flag(name)} {','.join(map(str, value))}"
    return f"{_flag(name)} {value}"


def _run_parser(lab) -> argparse.ArgumentParser:
    p = Parser(
        prog=f"deepnotes run {lab.name}",
        description=f"{lab.summary}. Source: {lab.source}.",
    )
    g = p.add_argument_group("run")
    g.add_argument("--preset", choices=sorted(lab.presets), help="a named set of flag values; flags given after it win. "
                   + "; ".join(f"{k}: {' '.join(_preset_flag(a, b) for a, b in v.items())}"
                               for k, v in lab.presets.items()))
    g.add_argument("--out", default="runs", help="folder that receives runs/<lab>/<timestamp>/ (default: runs)")
    g.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    add_config_flags(p.add_argument_group("config"), lab.config_cls)
    return p


def parse_run_config(lab, argv: Sequence[str]) -> tuple[Any, argparse.Namespace]:
    """The validated config of ``deepnotes run LAB argv`` and the parsed run flags, before anything is written.

    Raises:
        UserError: a value outside a field's declared range or choices, a broken cross-field rule, or a
            ``--resume`` that changes the saved config (one line naming the flag).
    """
    from deepnotes.experiment import Run, make_config

    args = _run_parser(lab).parse_args(argv)
    given = {k: v for k, v in vars(args).items() if k not in ("preset", "out", "resume")}
    if args.resume:
        run = Run(args.resume)
        if run.lab.name != lab.name:
            raise UserError(f"--resume {args.resume} is a run of {run.lab.name}, not {lab.name}")
        cfg = run.config
        changed = sorted(k for k, v in given.items() if k not in ("device", "progress", "threads") and v != getattr(cfg, k))
        if changed:
            raise UserError(
                f"--resume continues a run with its saved config; drop {', '.join(_flag(k) for k in changed)} "
                "(only --device, --progress and --threads may change)"
            )
        return dataclasses.replace(cfg, **{k: v for k, v in given.items() if k in ("device", "progress", "threads")}), args
    return make_config(lab.config_cls, {**lab.presets.get(args.preset, {}), **given}), args


def cmd_run(lab_name: str, argv: Sequence[str]) -> int:
    import torch

    from deepnotes.experiment import Run, RunContext, get_lab
    from deepnotes.train import distributed as distr

    lab = get_lab(lab_name)
    cfg, args = parse_run_config(lab, argv)
    device = distr.resolve_device(cfg.device, distr.local_rank_from_env())
    requested = getattr(cfg, "threads", 0)
    started_with = Path(args.resume) / CPU_FILE if args.resume else None
    if not requested and started_with is not None and started_with.is_file() and not os.environ.get("OMP_NUM_THREADS"):
        # a resumed run keeps the thread count it started with: the kernels' sums, and so the bits, depend on it
        requested = int(json.loads(started_with.read_text()).get("threads", 0))
    threads_note = _set_threads(requested)
    if requested and not getattr(cfg, "threads", 0):
        threads_note = f"{requested} thread(s), as when the run started ({CPU_FILE})"
    info = distr.setup(device)
    try:
        if info.is_main:
            run = Run(args.resume) if args.resume else Run.create(args.out, lab.name, cfg)
            if not args.resume:
                run.write_json(CPU_FILE, {"threads": torch.get_num_threads(), "why": threads_note})
            print(f"run folder: {run.path}\nCPU: {threads_note}", flush=True)
        else:
            run = None
        run_dir = distr.broadcast_object(str(run.path) if run else None, info)
        ctx = RunContext(Path(run_dir), device, info, resume=bool(args.resume))
        torch.manual_seed(cfg.seed)
        try:
            lab.run(cfg, ctx)
        except UserError as e:
            # a user's mistake found before anything was produced: leave no empty run folder behind,
            # and say so (the "run folder:" line above named it)
            if info.is_main and not args.resume and run.remove_if_empty():
                raise UserError(f"{e} (nothing was run; the run folder {run_dir} was removed)") from e
            raise
    finally:
        distr.teardown()
    return 0


CPU_FILE = "cpu.json"  # the torch thread count a run started with (a resumed run takes it again)


def _set_threads(requested: int) -> str:
    """Give torch ``requested`` threads, else one per idle core unless OMP_NUM_THREADS says (deepnotes.runtime);
    returns the reason, for the log."""
    import torch

    from deepnotes import runtime

    threads, why = runtime.choose_threads(requested)
    if threads:
        torch.set_num_threads(threads)
    return why


def cmd_eval(args) -> int:
    from deepnotes.experiment import Run
    from deepnotes.train.distributed import resolve_device

    _set_threads(0)
    run = Run(args.run_dir)
    extra = {}
    if args.skip_bad:
        if "skip_bad" not in inspect.signature(run.lab.evaluate).parameters:
            raise UserError(f"--skip-bad: lab {run.lab.name} reads no audio folder; drop the flag")
        extra["skip_bad"] = True
    metrics = run.lab.evaluate(run, args.data, resolve_device(args.device), **extra)
    shown = {k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}
    for key, value in shown.items():
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    print(f"saved in {run / 'eval'}")
    return 0


def cmd_sample(args) -> int:
    from deepnotes.experiment import Run, all_labs
    from deepnotes.train.distributed import resolve_device

    run = Run(args.run_dir)
    lab = run.lab
    if lab.sample is None:
        generative = ", ".join(other.name for other in all_labs() if other.sample)
        raise UserError(f"{run.path} is a run of {lab.name}, which does not generate text; sample from a run of: {generative}")
    if args.max_new_tokens < 0:
        raise UserError("--max-new-tokens must be >= 0")
    if args.temperature < 0:
        raise UserError("--temperature must be >= 0 (0 = greedy)")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise UserError("--top-p must be in (0, 1]")
    _set_threads(0)
    print(lab.sample(run, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed,
                     resolve_device(args.device)))
    return 0


def cmd_report(args) -> int:
    from deepnotes.experiment import Run

    run = Run(args.run_dir)
    print(run.lab.report(run))
    return 0


def cmd_data(args) -> int:
    from deepnotes.data import data_root
    from deepnotes.data.registry import all_datasets, get_dataset

    if args.data_cmd == "list":
        entries = all_datasets()
        width = max(len(n) for n in entries)
        print(f"data folder: {data_root()} (set DEEPNOTES_DATA to change)")
        for name, info in entries.items():
            print(f"{name:<{width}}  {info.status()}  -- {info.description}")
    elif args.data_cmd == "info":
        info = get_dataset(args.name)
        print(info.how_to_get())
        print(f"Status: {info.status()}")
    elif args.data_cmd == "build":
        folder = get_dataset(args.name).build()
        print(f"{args.name}: present at {folder}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = Parser(prog="deepnotes", description="Runnable labs for a deep-learning curriculum.")
    parser.add_argument("--version", action="version", version=f"deepnotes {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND", parser_class=Parser)
    sub.add_parser("list", help="list the labs")
    p_run = sub.add_parser("run", help="train and evaluate a lab (deepnotes run LAB --help for its flags)", add_help=False)
    p_run.add_argument("lab", nargs="?")
    p_eval = sub.add_parser("eval", help="evaluate a finished run on its test split or other data")
    p_eval.add_argument("run_dir")
    p_eval.add_argument("--data", help="dataset name (deepnotes data list) or a folder of the same format")
    p_eval.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p_eval.add_argument("--skip-bad", action="store_true",
                        help="keyword-spotting: leave out (and name) WAV files of --data that cannot be read")
    p_report = sub.add_parser("report", help="re-render a run's report.md and plots")
    p_report.add_argument("run_dir")
    p_sample = sub.add_parser("sample", help="continue a prompt with a finished language-model run")
    p_sample.add_argument("run_dir")
    p_sample.add_argument("--prompt", required=True, help="text to continue (characters of the model's vocabulary)")
    p_sample.add_argument("--max-new-tokens", type=int, default=300, help="tokens (characters) to generate (default 300)")
    p_sample.add_argument("--temperature", type=float, default=0.8, help="softmax temperature; 0 = greedy (default 0.8)")
    p_sample.add_argument("--top-k", type=int, default=0, help="sample from the k most likely tokens only (0 = off)")
    p_sample.add_argument("--top-p", type=float, default=None, help="nucleus sampling: smallest set with this probability")
    p_sample.add_argument("--seed", type=int, default=0, help="random seed of the draws (default 0)")
    p_sample.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"], help="where to run (default cpu)")
    p_data = sub.add_parser("data", help="datasets: list, info NAME, build NAME")
    dsub = p_data.add_subparsers(dest="data_cmd", required=True, metavar="ACTION", parser_class=Parser)
    dsub.add_parser("list", help="every dataset, and whether it is present here")
    dsub.add_parser("info", help="where a dataset comes from and how to get it").add_argument("name")
    dsub.add_parser("build", help="download or build a dataset into the data folder").add_argument("name")

    try:
        if argv[:1] == ["run"]:
            rest = argv[1:]
            if not rest or rest[0].startswith("-"):
                if rest[:1] in (["-h"], ["--help"]):
                    print("usage: deepnotes run LAB [--flag value ...]\n\nLabs (deepnotes run LAB --help for flags):")
                    cmd_list(None)
                    return 0
                parser.error("run needs a lab name: deepnotes run LAB (see `deepnotes list`)")
            return cmd_run(rest[0], rest[1:])
        args = parser.parse_args(argv)
        handlers = {"list": cmd_list, "eval": cmd_eval, "report": cmd_report, "data": cmd_data, "sample": cmd_sample}
        return handlers[args.cmd](args)
    except UserError as e:
        print(f"deepnotes: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `deepnotes eval RUN | head -1`: the reader left; not an error of ours
        _quiet_stdout()
        return 0
    except KeyboardInterrupt:
        print("deepnotes: interrupted; resume with --resume RUN_DIR (the last finished epoch is kept)", file=sys.stderr)
        return 130


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: the reader of a pipe left (``deepnotes eval RUN | head -1``); Python's flush at exit
    must not turn that into an error."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def entry() -> None:
    """Console-script entry point (``deepnotes._launch.entry`` sets OpenMP's wait policy first)."""
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
    sys.exit(code)


if __name__ == "__main__":
    entry()
