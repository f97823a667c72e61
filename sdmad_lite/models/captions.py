"""Captions for PhantomCLIP pretraining: they describe a phantom's *signs* and modality and
never name an anomaly category.

This is the sandbox's version of web-scale image–text pretraining: the vision–language model
learns what "a blunted costophrenic angle" looks like, but never sees the word "effusion".
So zero-shot classification with category names stays near chance while sign descriptions
carry knowledge — the situation SD-MAD is about.

Some signs are left out of the captions on purpose (:data:`UNCAPTIONED`): they are drawn in
the images but never described, modelling signs that the VLM does not know. Sign selection
should learn to drop prompts that rely on them.

How much the model learns of the sign bank's *words* is a knob of the recipe
(:class:`CaptionStyle`, DESIGN.md "The regime the sandbox must be in"):

- ``radiological_share``: the share of sign phrases written in the radiological vocabulary of
  :data:`SIGN_PHRASES` (close to the sign bank's wording); the others come from :data:`LAY_PHRASES`,
  everyday visual words ("a big pale ball in a lung") that the bank never uses. 1 is the oracle
  recipe; 0 teaches the image tower every sign while the bank's words stay mostly unseen, as real
  CLIP has seen medical images with lay alt-text far more often than with radiological wording.
- ``uncaptioned``: the signs never described (default :data:`UNCAPTIONED`; a recipe may add more).
- ``negated``: the normal caption "... with no abnormal finding" of the first recipes. A CLIP text
  tower reads the words, not the negation. Off by default; kept to reproduce the old checkpoints.
- ``normal_anatomy`` (on by default): half of the normal images are captioned with their normal
  anatomy in positive words ("a chest x-ray with clear lungs and a normal heart size"), as reports
  describe normal findings.

Why the anchor inverted (measured; ``sdmad_lite/resources/results/anchor_inversion.csv``): the anchor's
normal prompts include "a chest x-ray with clear lungs and a normal heart size", "a brain MRI with
normal ventricles and white matter", "... with no abnormal findings". Their words (*heart*,
*ventricles*, *white matter*, *abnormal*) appeared in the captions of abnormal images only, so the
text tower placed these *normal* prompts near abnormal images. Same 250-step recipe (no tag loss),
anchor AUROC chest / brain: old captions 31.5 / 26.3; without the negated caption 27.5 / 31.8;
without it and with normal-anatomy captions 81.0 / 71.4. The negated caption is removed because
it is wrong in kind (DESIGN.md), not because removing it alone fixes the anchor: the normal-anatomy
captions do.

Which images get sign captions at all (the rest get the modality alone, "a chest x-ray") is a
knob of the pretraining recipe (``PretrainConfig.sign_caption_share``), see :func:`plain_caption`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..data.phantoms.catalogue import MODALITIES

#: how each modality is named in captions
MODALITY_PHRASES: dict[str, tuple[str, ...]] = {
    "chest": ("chest x-ray", "frontal chest radiograph", "chest radiograph"),
    "oct": ("retinal oct scan", "oct b-scan of the retina", "optical coherence tomography image of the retina"),
    "brain": ("axial brain mri", "brain mri slice", "axial flair image of the brain"),
}

#: the captions of normal images, with no negation (see the module docstring); the first one replaces the
#: negated caption of the first recipes (``NEGATED_NORMAL_TEMPLATES``), so the random draws are the same
NORMAL_TEMPLATES = ("a healthy {mod}", "a normal {mod}", "{a_mod} showing normal anatomy")
NEGATED_NORMAL_TEMPLATES = ("{a_mod} with no abnormal finding", "a normal {mod}", "{a_mod} showing normal anatomy")
#: the normal anatomy of each modality in positive words (``CaptionStyle.normal_anatomy``)
NORMAL_ANATOMY: dict[str, tuple[str, ...]] = {
    "chest": ("clear lungs and a normal heart size", "clear lungs", "a normal heart size", "a normal heart and clear lungs"),
    "oct": ("a normal foveal pit and flat retinal layers", "flat retinal layers", "a normal foveal pit",
            "regular retinal layers"),
    "brain": ("normal ventricles and white matter", "normal ventricles", "normal white matter",
              "a normal ventricular system"),
}
NORMAL_ANATOMY_TEMPLATES = ("{a_mod} with {anatomy}", "{a_mod} showing {anatomy}")
PLAIN_TEMPLATES = ("{a_mod}", "{a_mod} image")
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

#: a second, lay vocabulary of the same signs, in everyday visual words rather than the sign bank's radiological
#: ones (a test checks that no phrase repeats a bank text); ``CaptionStyle.radiological_share`` < 1 uses it
LAY_PHRASES: dict[str, tuple[str, ...]] = {
    # chest
    "linear_band_opacity": ("a thin pale streak low in one lung", "a flat light stripe near the bottom of a lung"),
    "elevated_hemidiaphragm": ("one side of the chest floor sitting higher", "a lifted dome under one lung"),
    "mediastinal_shift": ("the middle of the chest pushed to one side", "the central column leaning sideways"),
    "rib_crowding": ("the bones of one side packed close together", "tightly bunched bones on one side"),
    "enlarged_cardiac_silhouette": ("a big heart", "a wide pale shape in the middle of the chest"),
    "displaced_cardiac_apex": ("the tip of the heart pointing low and outward", "a heart tip sitting low and far out"),
    "vascular_redistribution": ("thick branching lines at the top of the lungs", "busy tree-like lines high in the lungs"),
    "costophrenic_blunting": ("a rounded-off lower outer corner of a lung", "a soft corner at the bottom edge of a lung"),
    "meniscus_opacity": ("a pale layer pooled at the bottom of a lung with a curved top",
                         "a light pool filling the bottom of a lung"),
    "patchy_airspace_opacity": ("cloudy smudges in the lungs", "soft blurry patches in the lungs"),
    "reticular_pattern": ("a fine web of thin lines across the lungs", "a mesh of faint lines in the lungs"),
    "large_round_opacity": ("a big pale ball in a lung", "a large light blob in one lung"),
    "lobulated_margin": ("a bumpy outline around a blob", "a blob with a lumpy edge"),
    "small_round_opacity": ("a small pale dot in a lung", "a little light speck in one lung"),
    "multiple_small_opacities": ("many little pale dots spread over the lungs", "a sprinkle of tiny light specks in both lungs"),
    "calcified_focus": ("a chalk-white speck", "a tiny stone-bright fleck"),
    "lobar_consolidation": ("one whole section of a lung turned solid pale", "a large solid light area with a straight edge"),
    "air_bronchogram": ("dark branching tubes showing through a pale area", "black tree-like tracks inside a light patch"),
    "visceral_pleural_line": ("a thin bright curve inside the chest wall", "a fine light arc set apart from the side wall"),
    "absent_lung_markings": ("an empty black strip along the side of a lung", "a dark band with no lines at the edge of a lung"),
    "deep_sulcus": ("a deep dark notch at the bottom corner of a lung", "a sharp black pocket at the lower outer corner"),
    # oct
    "subretinal_hyperreflective_material": ("a bright blob under the back layer of the eye",
                                            "a glowing clump beneath the eye's inner lining"),
    "fibrovascular_ped": ("a lumpy raised hump of the deepest bright band", "an uneven bump in the bottom bright line"),
    "subretinal_fluid": ("a dark bubble lifting the eye's inner lining", "a black pocket under the layers"),
    "intraretinal_cysts": ("round dark holes inside the layers", "black bubbles within the tissue band"),
    "retinal_thickening": ("a swollen tissue band with no dip in the middle", "a puffy layered band that lost its central dip"),
    "hyperreflective_foci": ("tiny glinting specks in the layers", "little sparkling dots in the tissue band"),
    "rpe_undulation": ("a wavy bottom bright line", "small bumps along the deepest bright band"),
    "sub_rpe_deposits": ("grey lumps under the deepest bright band", "material piled below the bottom bright line"),
    # brain
    "punctate_wm_hyperintensities": ("tiny glowing dots deep inside the brain", "a few bright pinpoints in the inner brain tissue"),
    "periventricular_hyperintensity": ("a glowing band hugging the dark spaces in the middle",
                                       "a bright lining around the butterfly-shaped holes"),
    "confluent_wm_hyperintensity": ("large merging bright clouds in the inner brain", "glowing blotches running together deep in the brain"),
    "resection_cavity": ("a hole filled with liquid inside the brain", "a smooth-edged empty pocket in the brain tissue"),
    "gliotic_rim": ("a glowing ring around a hole", "a bright border around an empty pocket"),
    "skull_defect": ("a break in the bony ring", "a missing piece of the head's bony outline"),
    "scalp_swelling": ("puffy soft skin over the head", "a swollen outer layer of the head"),
    "space_occupying_lesion": ("a round blotchy lump with a glowing ring", "a big round growth with a bright edge"),
    "mass_effect": ("the middle line of the brain pushed sideways", "one dark middle space squeezed and the middle bent over"),
    "vasogenic_edema": ("bright finger-shaped streaks spreading in the brain", "a glowing spread deep in the brain tissue"),
    "ventriculomegaly": ("very wide dark spaces in the middle of the brain", "ballooned butterfly-shaped holes in the middle of the brain"),
    "extra_axial_collection": ("a thin sliver of liquid just under the bone", "a curved film of liquid between the brain and the bone"),
    "sulcal_effacement": ("smoothed-out brain folds", "surface grooves of the brain squeezed shut"),
}

#: signs drawn in the images but never described in captions ("unknown to the VLM")
UNCAPTIONED: frozenset[str] = frozenset({"rib_crowding", "deep_sulcus", "sub_rpe_deposits", "scalp_swelling"})


@dataclass(frozen=True)
class CaptionStyle:
    """How captions are written (module docstring). The default is the first recipe's with the anchor
    fix (no negated caption, normal-anatomy captions)."""

    radiological_share: float = 1.0
    uncaptioned: frozenset = field(default=UNCAPTIONED)
    negated: bool = False
    normal_anatomy: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.radiological_share) <= 1.0:
            raise ValueError(f"radiological_share must be in [0, 1], got {self.radiological_share}")
        unknown = set(self.uncaptioned) - set(SIGN_PHRASES)
        if unknown:
            raise ValueError(f"unknown signs in uncaptioned: {sorted(unknown)}")
        object.__setattr__(self, "uncaptioned", frozenset(self.uncaptioned))


DEFAULT_STYLE = CaptionStyle()


def with_article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _join(phrases: Sequence[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def caption(modality: str, signs: Sequence[str], rng: np.random.Generator, style: CaptionStyle = DEFAULT_STYLE) -> str:
    """One random caption of a phantom of ``modality`` showing ``signs`` (uncaptioned ones dropped),
    written as ``style`` says. Abnormal images get the same captions as in the first recipes (same
    random draws) unless the vocabulary knob is moved; normal images one more draw (``normal_anatomy``)."""
    mod = MODALITY_PHRASES[modality][rng.integers(len(MODALITY_PHRASES[modality]))]
    said = [s for s in signs if s not in style.uncaptioned]
    if not signs:
        if style.normal_anatomy and rng.random() < 0.5:
            anatomy = NORMAL_ANATOMY[modality][rng.integers(len(NORMAL_ANATOMY[modality]))]
            template = NORMAL_ANATOMY_TEMPLATES[rng.integers(len(NORMAL_ANATOMY_TEMPLATES))]
            return template.format(mod=mod, a_mod=with_article(mod), anatomy=anatomy)
        templates = NEGATED_NORMAL_TEMPLATES if style.negated else NORMAL_TEMPLATES
        return templates[rng.integers(len(templates))].format(mod=mod, a_mod=with_article(mod))
    if not said:
        return UNDESCRIBED_TEMPLATE.format(mod=mod)
    said = list(rng.permutation(said))
    phrases = [_phrase(s, rng, style.radiological_share) for s in said]
    template = ABNORMAL_TEMPLATES[rng.integers(len(ABNORMAL_TEMPLATES))]
    return template.format(mod=mod, a_mod=with_article(mod), signs=_join(phrases))


def _phrase(sign: str, rng: np.random.Generator, radiological_share: float) -> str:
    """A phrase of ``sign``: radiological with probability ``radiological_share``, else lay (no draw at 0 or 1)."""
    radiological = radiological_share >= 1.0 or (radiological_share > 0.0 and rng.random() < radiological_share)
    options = SIGN_PHRASES[sign] if radiological else LAY_PHRASES[sign]
    return options[rng.integers(len(options))]


def plain_caption(modality: str, rng: np.random.Generator) -> str:
    """The caption of an image that gets no sign caption (``PretrainConfig.sign_caption_share`` < 1):
    the modality alone, normal or not ("a chest x-ray")."""
    mod = MODALITY_PHRASES[modality][rng.integers(len(MODALITY_PHRASES[modality]))]
    return PLAIN_TEMPLATES[rng.integers(len(PLAIN_TEMPLATES))].format(mod=mod, a_mod=with_article(mod))


#: the caption key of every :func:`plain_caption` of a modality
PLAIN_KEY = frozenset({"<plain>"})


def caption_key(modality: str, signs: Sequence[str], uncaptioned: frozenset = UNCAPTIONED) -> tuple[str, frozenset[str]]:
    """What a caption says: captions with equal keys are equally true of an image."""
    return modality, frozenset(s for s in signs if s not in uncaptioned) or (frozenset({"<abnormal>"}) if signs else frozenset())


def check_no_category_names() -> None:
    """Raise if any caption phrase names a category of any modality (the premise of the sandbox)."""
    names = {c.lower().replace("_", " ") for m in MODALITIES.values() for c in m.categories}
    texts = [p for table in (SIGN_PHRASES, LAY_PHRASES, MODALITY_PHRASES, NORMAL_ANATOMY) for ps in table.values() for p in ps]
    texts += list(NORMAL_TEMPLATES) + list(NEGATED_NORMAL_TEMPLATES) + list(ABNORMAL_TEMPLATES) + [UNDESCRIBED_TEMPLATE]
    texts += list(NORMAL_ANATOMY_TEMPLATES) + list(PLAIN_TEMPLATES)
    for t in texts:
        for n in names:
            if f" {n} " in f" {t.lower()} ":
                raise AssertionError(f"caption text {t!r} names the category {n!r}")
    for table, what in ((SIGN_PHRASES, "radiological"), (LAY_PHRASES, "lay")):
        missing = {s for m in MODALITIES.values() for s in m.signs} - set(table)
        if missing:
            raise AssertionError(f"signs without {what} caption phrases: {sorted(missing)}")
