"""``sdmad signs list`` and ``sdmad signs show NAME [--all]``."""
from __future__ import annotations

import argparse
import functools
from typing import Any

from ..signs import SignBank


def _print_bank(bank: SignBank, show_all: bool) -> None:
    st = bank.stats()
    print(f"{bank.name}: {bank.title}")
    print(f"  file {bank.path}")
    print(f"  modality {bank.modality!r} (obj: {bank.obj!r}), {st['templates']} sign templates")
    line = (f"  {st['categories']} categories, {st['candidates']} candidates ({st['not_visual']} not visual), "
            f"{st['selected']} selected, {st['shared']} shared signs, {st['selected_prompts']} prompts with the "
            f"selection, {st['all_prompts']} prompts in all")
    print(line)
    if bank.is_phantom:
        print(f"  renderer: {st['candidates'] - st['not_drawn']} candidates drawn, {st['not_drawn']} not drawn "
              f"({st['not_drawn_share']:.0%}); {st['selected_not_drawn']} selected signs are not drawn")
    for c in bank.categories:
        cands, sel = bank.candidates(c), bank.selected(c)
        print(f"\n{c} ({bank.category_name(c)!r}): {len(cands)} candidates, {len(sel)} selected")
        r = bank.renders(c)
        chosen = {s.id for s in sel}
        rows = cands if show_all else sel
        for s in rows:
            mark = "*" if s.id in chosen else " "
            tags = [] if s.visual else [s.kind]
            if s.shared:
                tags.append("shared with " + ", ".join(x for x in s.categories if x != c))
            if bank.is_phantom:
                tags.append(f"draws {r[s.id]}" if r.get(s.id) else "not drawn")
            reason = next((x.reason for x in sel if x.id == s.id), None)
            print(f"  {mark} {s.id:<28} {s.text}" + (f"  [{'; '.join(tags)}]" if tags else ""))
            if reason:
                print(f"      - {reason}")


def _cmd_signs(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> int:
    if args.signs_command == "list":
        print(f"{'bank':<16} {'kind':<15} {'categories':>10} {'candidates':>10} {'selected':>8} {'prompts':>8}")
        for name in SignBank.available():
            st = SignBank.load(name).stats()
            print(f"{name:<16} {st['kind']:<15} {st['categories']:>10} {st['candidates']:>10} "
                  f"{st['selected']:>8} {st['selected_prompts']:>8}")
        return 0
    if args.signs_command == "show":
        _print_bank(SignBank.load(args.name), args.all)  # an error: one message on stderr (sdmad_lite.cli.main)
        return 0
    if parser is not None:
        parser.print_help()
    return 2


def add_subcommands(sub: Any) -> None:
    p = sub.add_parser("signs", help="list and show the sign banks (candidates, selection, prompts)",
                       description="The sign banks: candidate signs, the expert selection, prompts.")
    s = p.add_subparsers(dest="signs_command", metavar="{list,show}")
    s.add_parser("list", help="the available sign banks with their counts")
    show = s.add_parser("show", help="categories, selected signs with reasons, counts")
    show.add_argument("name", help="a bank name (see `sdmad signs list`) or a path to a sign file")
    show.add_argument("--all", action="store_true", help="list every candidate, not only the selection")
    p.set_defaults(func=functools.partial(_cmd_signs, parser=p))
