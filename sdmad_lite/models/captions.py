"""Captions for PhantomCLIP pretraining: they describe a phantom's *signs* and modality and
never name an anomaly category.

This is the sandbox's version of web-scale image–text pretraining: the vision–language model
learns what "a blunted costophrenic angle" looks like, but never sees the word "effusion".
So zero-shot classification with category names stays near chance while sign descriptions
carry knowledge — the situation SD-MAD is about.

Some signs are left out of the captions on purpose (:data:`UNCAPTIONED`): they are drawn in
the images but never described, modelling signs that the VLM does not know. Sign selection
should learn to drop prompts that rely on them.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..data.phantoms.catalogue import MODALITIES

#: how each modality is named in captions
MODALITY_PHRASES: dict[str, tuple[str, ...]] = {
    "chest": ("chest x-ray", "frontal chest radiograph", "chest radiograph"),
    "oct": ("retinal oct scan", "oct b-scan of the retina", "optical coherence tomography image of the retina"),
    "brain": ("axial brain mri", "brain mri slice", "axial flair image of the brain"),
}

NORMAL_TEMPLATES = ("{a_mod} with no abnormal finding", "a normal {mod}", "{a_mod} showing normal anatomy")
ABNORMAL_TEMPLATES = ("{a_mod} showing {signs}", "{a_mod} with {signs}", "an abnormal {mod} with {signs}")
UNDESCRIBED_TEMPLATE = "an abnormal {mod}"

#: paraphrases of every renderer sign (the words the VLM learns); none contains a category name
SIGN_PHRASES: dict[str, tuple[str, ...]] = {
    # chest
    "linear_band_opacity": ("a thin linear band of opacity at the lung base", "plate-like linear opacity in the lower zone"),
    "elevated_hemidiaphragm": ("an elevated hemidiaphragm", "one raised diaphragm dome"),
    "mediastinal_shift": ("a shifted mediastinum", "the trachea and mediastinum displaced to one side"),
    "rib_crowding": ("crowded ribs", "closely spaced ribs over one lung"),
    "enlarged_cardiac_silhouette": ("an enlarged cardiac silhouette", "a wide heart shadow"),
    "displaced_cardiac_apex": ("a cardiac apex displaced downward and to the left", "a low, laterally displaced heart apex"),
    "vascular_redistribution": ("prominent upper zone vessels", "upper lobe vascular redistribution"),
    "costophrenic_blunting": ("a blunted costophrenic angle", "loss of the sharp costophrenic angle"),
    "meniscus_opacity": ("a dense basal opacity with a meniscus", "a dependent opacity with a curved upper border"),
    "patchy_airspace_opacity": ("patchy hazy opacities", "ill-defined patchy airspace opacity"),
    "reticular_pattern": ("a fine reticular pattern", "net-like interstitial lines"),
    "large_round_opacity": ("a large round opacity", "a big rounded lung opacity"),
    "lobulated_margin": ("a lobulated irregular margin", "an opacity with a lobulated edge"),
    "small_round_opacity": ("a small round opacity", "a small well-circumscribed spot"),
    "multiple_small_opacities": ("several small round opacities", "multiple scattered small spots"),
    "calcified_focus": ("a dense calcified focus", "a very bright calcified spot"),
    "lobar_consolidation": ("a dense lobar consolidation", "homogeneous opacity filling a lobe"),
    "air_bronchogram": ("air bronchograms", "dark branching airways inside an opacity"),
    "visceral_pleural_line": ("a thin visceral pleural line", "a white pleural line away from the chest wall"),
    "absent_lung_markings": ("absent lung markings at the periphery", "a lucent periphery without vessels"),
    "deep_sulcus": ("a deep lucent costophrenic sulcus", "a deep sulcus"),
    # oct
    "subretinal_hyperreflective_material": ("subretinal hyperreflective material", "a bright lesion under the retina"),
    "fibrovascular_ped": ("an irregular elevation of the pigment epithelium", "a fibrovascular pigment epithelial detachment"),
    "subretinal_fluid": ("subretinal fluid", "a dark fluid pocket under the retina"),
    "intraretinal_cysts": ("intraretinal cystoid spaces", "dark round cysts within the retina"),
    "retinal_thickening": ("a thickened retina", "retinal thickening with a flat fovea"),
    "hyperreflective_foci": ("hyperreflective foci", "small bright dots in the retina"),
    "rpe_undulation": ("an undulating pigment epithelium", "small dome-shaped bumps of the rpe"),
    "sub_rpe_deposits": ("deposits beneath the rpe", "material under the pigment epithelium"),
    # brain
    "punctate_wm_hyperintensities": ("punctate white matter hyperintensities", "small bright dots in the white matter"),
    "periventricular_hyperintensity": ("periventricular hyperintensity", "a bright rim around the ventricles"),
    "confluent_wm_hyperintensity": ("confluent white matter hyperintensity", "patchy bright deep white matter"),
    "resection_cavity": ("a fluid-filled cavity in the brain", "a sharply marginated parenchymal cavity"),
    "gliotic_rim": ("a bright gliotic rim", "a hyperintense rim around a cavity"),
    "skull_defect": ("a focal skull defect", "a gap in the skull"),
    "scalp_swelling": ("thickened scalp soft tissue", "scalp swelling"),
    "space_occupying_lesion": ("a round heterogeneous lesion with a bright rim", "a space-occupying lesion"),
    "mass_effect": ("midline shift with a compressed ventricle", "a shifted midline"),
    "vasogenic_edema": ("finger-like bright white matter signal", "bright signal spreading through the white matter"),
    "ventriculomegaly": ("dilated lateral ventricles", "ventriculomegaly with rounded horns"),
    "extra_axial_collection": ("a thin crescent of fluid under the skull", "an extra-axial fluid collection"),
    "sulcal_effacement": ("effaced sulci", "loss of the cortical sulci"),
}

#: signs drawn in the images but never described in captions ("unknown to the VLM")
UNCAPTIONED: frozenset[str] = frozenset({"rib_crowding", "deep_sulcus", "sub_rpe_deposits", "scalp_swelling"})


def with_article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _join(phrases: Sequence[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def caption(modality: str, signs: Sequence[str], rng: np.random.Generator) -> str:
    """One random caption of a phantom of ``modality`` showing ``signs`` (uncaptioned ones dropped)."""
    mod = MODALITY_PHRASES[modality][rng.integers(len(MODALITY_PHRASES[modality]))]
    said = [s for s in signs if s not in UNCAPTIONED]
    if not signs:
        return NORMAL_TEMPLATES[rng.integers(len(NORMAL_TEMPLATES))].format(mod=mod, a_mod=with_article(mod))
    if not said:
        return UNDESCRIBED_TEMPLATE.format(mod=mod)
    said = list(rng.permutation(said))
    phrases = [SIGN_PHRASES[s][rng.integers(len(SIGN_PHRASES[s]))] for s in said]
    template = ABNORMAL_TEMPLATES[rng.integers(len(ABNORMAL_TEMPLATES))]
    return template.format(mod=mod, a_mod=with_article(mod), signs=_join(phrases))


def caption_key(modality: str, signs: Sequence[str]) -> tuple[str, frozenset[str]]:
    """What a caption says: captions with equal keys are equally true of an image."""
    return modality, frozenset(s for s in signs if s not in UNCAPTIONED) or (frozenset({"<abnormal>"}) if signs else frozenset())


def check_no_category_names() -> None:
    """Raise if any caption phrase names a category of any modality (the premise of the sandbox)."""
    names = {c.lower().replace("_", " ") for m in MODALITIES.values() for c in m.categories}
    texts = [p for ps in SIGN_PHRASES.values() for p in ps] + [p for ps in MODALITY_PHRASES.values() for p in ps]
    texts += list(NORMAL_TEMPLATES) + list(ABNORMAL_TEMPLATES) + [UNDESCRIBED_TEMPLATE]
    for t in texts:
        for n in names:
            if f" {n} " in f" {t.lower()} ":
                raise AssertionError(f"caption text {t!r} names the category {n!r}")
    missing = {s for m in MODALITIES.values() for s in m.signs} - set(SIGN_PHRASES)
    if missing:
        raise AssertionError(f"signs without caption phrases: {sorted(missing)}")
