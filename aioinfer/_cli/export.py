"""``aioinfer export``: a task's models written as the task runs them, as OpenVINO IR to serve."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._errors import SettingsError

ROLES = ("det", "rec", "cls")  # the ocr task's models


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "export",
        help="write the ocr task's models as it runs them (OpenVINO IR), for a server",
        description="Write the PP-OCR models of the ocr task (the bundled ones, or --det/--rec/--cls) "
        "as the task runs them: taking BGR uint8 images [N,H,W,3] with PP-OCR's normalization in "
        "their graph, the recognizer answering its best class per step ('ids', 'scores') and keeping "
        "its alphabet in its metadata; as DIR/det.xml, DIR/rec.xml and DIR/cls.xml (with their .bin), "
        "weights in full precision. `aioinfer serve DIR --grpc-port 8001` serves them as det, rec and "
        "cls; a thin client then runs the ocr task against them: aioinfer.tasks.load({'det': "
        "'grpc://HOST:8001/det', 'rec': ..., 'cls': ...}, task='ocr', "
        "characters=aioinfer.tasks.ocr_characters()).",
    )
    p.add_argument("task", choices=("ocr",), help="the task whose models to write: ocr")
    p.add_argument("folder", metavar="DIR", help="where to write them (made if missing; files replaced)")
    for role, what in zip(ROLES, ("text detector", "recognizer", "line orientation classifier"), strict=True):
        p.add_argument(
            f"--{role}", metavar="PATH", help=f"the {what} to write (default: the bundled PP-OCR one)"
        )
    p.add_argument(
        "--characters",
        metavar="FILE",
        help="the recognizer's alphabet, one character a line as PP-OCR's dictionary files list it "
        "(the CTC blank and a final space are implied), for a recognizer whose metadata has none",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..tasks._ocr_models import export

    given = {role: getattr(args, role) for role in ROLES if getattr(args, role)}
    characters = _characters(args.characters, given.get("rec")) if args.characters else None
    for role, path in export(args.folder, given, characters=characters).items():
        print(f"{role}: {path}")
    return 0


def _characters(file: str, rec: str | None) -> tuple[str, ...]:
    """The classes of recognizer ``rec`` (the bundled one if ``None``) from the alphabet in ``file``."""
    from .. import _loading
    from .._bundled import bundled_model
    from ..tasks._ocr import listed_characters

    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read the --characters file {file!r}: {exc}") from None
    return listed_characters(text, _loading.read_model(rec or bundled_model("rec")))
