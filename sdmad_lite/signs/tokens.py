"""Every prompt of a bank against CLIP's 77-token context (the backbone's tokenizer): a prompt cut by the
tokenizer would silently lose the end of its sign, so a longer one is an error of its file."""
from __future__ import annotations

from typing import Any

from ..models.backbone import CONTEXT_LENGTH, count_tokens


def prompts_over_context(bank: Any) -> list[str]:
    """``file:line: ...`` for each place of ``bank`` (a :class:`~sdmad_lite.signs.bank.SignBank`) whose prompts
    exceed the context, one per place (its longest prompt), not one per template."""
    t = bank.templates_file
    items: list[tuple[str, str]] = []  # (prompt, where)
    for c in bank.categories:
        for sid, prompts in bank.sign_prompts(c, "all").items():
            items += [(q, bank._where[(c, sid)]) for q in prompts]
        items += [(q, bank._cat_where[c]) for q in bank.category_name_prompts(c)]
    for side, qs in bank.anchor_prompts().items():
        items += [(q, t.where.get(f"{bank.modality}:{a}", str(t.path)))
                  for q, a in zip(qs, t.modalities[bank.modality][side])]
    counts = count_tokens([q for q, _ in items])
    over: dict[str, list[tuple[int, str]]] = {}
    for (q, where), n in zip(items, counts):
        if n > CONTEXT_LENGTH:
            over.setdefault(where, []).append((n, q))
    out = []
    for where, bad in over.items():
        n, q = max(bad)
        more = f"{len(bad)} prompts" if len(bad) > 1 else "a prompt"
        out.append(f"{where}: {more} over {CONTEXT_LENGTH} tokens (longest {n}); shorten the text: {q!r}")
    return out
