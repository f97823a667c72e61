"""The phantom world's catalogue: modalities, anomaly categories and the signs that draw them.

This is the single source of truth shared by the renderers (which draw each sign), the
prompt bank (whose phantom sign files say which renderer sign a description refers to) and
PhantomCLIP's caption generator. Each category is a *combination* of 3–4 signs and some
signs are shared between categories, as the paper assumes.

Category names are those of the real label tables (ChestX-ray14, OCT2017, fastMRI+) so that
phantom label vectors can be sampled from the real tables.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SignSpec:
    id: str
    description: str  # one plain radiological sentence (documentation; not a prompt)


@dataclass(frozen=True)
class ModalitySpec:
    name: str
    dataset: str  # the real label table the label vectors are sampled from
    title: str
    categories: tuple[str, ...]
    signs: dict[str, SignSpec]
    category_signs: dict[str, tuple[str, ...]]
    multi_label: bool
    renderer: str = ""  # the module that draws it (default: ``name``)
    label_source: str = "real"  # real (rows of the ``dataset`` table) | uniform (world.uniform_labels)

    def shared_signs(self) -> dict[str, tuple[str, ...]]:
        """sign id -> the categories that use it, for signs used by two or more categories."""
        users: dict[str, list[str]] = {}
        for c, ss in self.category_signs.items():
            for s in ss:
                users.setdefault(s, []).append(c)
        return {s: tuple(cs) for s, cs in users.items() if len(cs) > 1}


def _signs(*pairs: tuple[str, str]) -> dict[str, SignSpec]:
    return {i: SignSpec(i, d) for i, d in pairs}


CHEST = ModalitySpec(
    name="chest",
    dataset="chestxray14",
    title="Frontal chest radiograph (PA)",
    categories=("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax"),
    signs=_signs(
        ("linear_band_opacity", "a thin plate-like linear band of opacity in the lower lung zone"),
        ("elevated_hemidiaphragm", "one hemidiaphragm sits higher than normal"),
        ("mediastinal_shift", "the trachea and mediastinum are displaced to one side"),
        ("rib_crowding", "crowded, closely spaced ribs over a lung that has lost volume"),
        ("enlarged_cardiac_silhouette", "the cardiac silhouette is wider than half of the thoracic width"),
        ("displaced_cardiac_apex", "the cardiac apex is displaced downward and to the left"),
        ("vascular_redistribution", "prominent upper-zone pulmonary vessels"),
        ("costophrenic_blunting", "the lateral costophrenic angle is blunted"),
        ("meniscus_opacity", "a dependent basal opacity with a concave upper meniscus"),
        ("patchy_airspace_opacity", "patchy, ill-defined hazy opacities"),
        ("reticular_pattern", "a fine reticular (net-like) interstitial pattern"),
        ("large_round_opacity", "a single large round opacity over 3 cm"),
        ("lobulated_margin", "a lobulated, irregular margin around an opacity"),
        ("small_round_opacity", "a small well-circumscribed round opacity under 3 cm"),
        ("multiple_small_opacities", "several small round opacities scattered in the lungs"),
        ("lobar_consolidation", "a dense homogeneous opacity filling one lobe"),
        ("air_bronchogram", "branching dark air-filled bronchi visible inside an opacity"),
        ("visceral_pleural_line", "a thin white visceral pleural line separated from the chest wall"),
        ("absent_lung_markings", "no lung markings beyond the pleural line (hyperlucent periphery)"),
        ("deep_sulcus", "an abnormally deep, lucent lateral costophrenic sulcus"),
        ("calcified_focus", "a very dense, sharply marginated calcified focus"),
    ),
    category_signs={
        "Atelectasis": ("linear_band_opacity", "elevated_hemidiaphragm", "mediastinal_shift", "rib_crowding"),
        "Cardiomegaly": ("enlarged_cardiac_silhouette", "displaced_cardiac_apex", "vascular_redistribution"),
        "Effusion": ("costophrenic_blunting", "meniscus_opacity", "mediastinal_shift"),
        "Infiltration": ("patchy_airspace_opacity", "reticular_pattern", "multiple_small_opacities"),
        "Mass": ("large_round_opacity", "lobulated_margin", "mediastinal_shift"),
        "Nodule": ("small_round_opacity", "multiple_small_opacities", "calcified_focus"),
        "Pneumonia": ("lobar_consolidation", "air_bronchogram", "patchy_airspace_opacity"),
        "Pneumothorax": ("visceral_pleural_line", "absent_lung_markings", "deep_sulcus", "mediastinal_shift"),
    },
    multi_label=True,
)

OCT = ModalitySpec(
    name="oct",
    dataset="oct2017",
    title="Retinal OCT B-scan through the fovea",
    categories=("CNV", "DME", "DRUSEN"),
    signs=_signs(
        ("subretinal_hyperreflective_material", "a hyperreflective lesion above the RPE, beneath the neurosensory retina"),
        ("fibrovascular_ped", "an irregular, fibrovascular elevation of the retinal pigment epithelium"),
        ("subretinal_fluid", "a dark dome of fluid between the neurosensory retina and the RPE"),
        ("intraretinal_cysts", "dark round cystoid spaces within the inner and outer nuclear layers"),
        ("retinal_thickening", "the retina is diffusely thickened and the foveal pit is flattened"),
        ("hyperreflective_foci", "small bright dots (hard exudates) within the retina"),
        ("rpe_undulation", "small dome-shaped undulations of the RPE band"),
        ("sub_rpe_deposits", "medium-reflective deposits between the RPE and Bruch's membrane"),
    ),
    category_signs={
        "CNV": ("subretinal_hyperreflective_material", "fibrovascular_ped", "subretinal_fluid"),
        "DME": ("intraretinal_cysts", "retinal_thickening", "hyperreflective_foci", "subretinal_fluid"),
        "DRUSEN": ("rpe_undulation", "sub_rpe_deposits", "hyperreflective_foci"),
    },
    multi_label=False,
)

BRAIN = ModalitySpec(
    name="brain",
    dataset="fastmri-brain",
    title="Axial brain MRI slice (FLAIR-like contrast)",
    # The six most frequent fastMRI+ slice labels that name a visible pathology ("Nonspecific
    # lesion" and "Possible artifact" are skipped: the first has no specific sign, the second
    # is not a pathology).
    categories=(
        "Nonspecific white matter lesion",
        "Posttreatment change",
        "Craniotomy",
        "Mass",
        "Edema",
        "Enlarged ventricles",
    ),
    signs=_signs(
        ("punctate_wm_hyperintensities", "small bright punctate foci in the deep and subcortical white matter"),
        ("periventricular_hyperintensity", "a bright rim or caps around the lateral ventricles"),
        ("resection_cavity", "a sharply marginated fluid-filled cavity in the brain parenchyma"),
        ("gliotic_rim", "a bright irregular rim of gliosis around a cavity"),
        ("skull_defect", "a focal gap in the bright-dark skull and scalp outline"),
        ("scalp_swelling", "thickened soft tissue over the skull near the defect"),
        ("space_occupying_lesion", "a round heterogeneous lesion with a bright rim"),
        ("mass_effect", "midline shift and compression of the adjacent ventricle"),
        ("vasogenic_edema", "finger-like bright signal spreading through the white matter"),
        ("ventriculomegaly", "symmetrically enlarged lateral ventricles with rounded horns"),
        ("confluent_wm_hyperintensity", "patchy, partly confluent bright areas in the deep white matter"),
        ("extra_axial_collection", "a thin crescent of fluid between the skull and the brain surface"),
        ("sulcal_effacement", "effaced cortical sulci with loss of grey-white distinction"),
    ),
    category_signs={
        "Nonspecific white matter lesion": (
            "punctate_wm_hyperintensities",
            "periventricular_hyperintensity",
            "confluent_wm_hyperintensity",
        ),
        "Posttreatment change": ("resection_cavity", "gliotic_rim", "skull_defect"),
        "Craniotomy": ("skull_defect", "scalp_swelling", "extra_axial_collection"),
        "Mass": ("space_occupying_lesion", "mass_effect", "vasogenic_edema"),
        "Edema": ("vasogenic_edema", "mass_effect", "sulcal_effacement"),
        "Enlarged ventricles": ("ventriculomegaly", "periventricular_hyperintensity", "sulcal_effacement"),
    },
    multi_label=True,
)

MODALITIES: dict[str, ModalitySpec] = {m.name: m for m in (CHEST, OCT, BRAIN)}

#: the pair worlds (``pairs0`` … ``pairs3``), two categories of three chest signs each; Finding B takes
#: its first ``n`` signs from Finding A, the rest of its own — the overlap is the only thing that changes
PAIR_SIGNS = (("large_round_opacity", "lobulated_margin", "calcified_focus"),
              ("reticular_pattern", "costophrenic_blunting", "vascular_redistribution"))
PAIR_CATEGORIES = ("Finding A", "Finding B")


def pair_modality(shared: int) -> ModalitySpec:
    """A controlled world of two categories drawn by the chest renderer that share ``shared`` (0–3)
    of their three signs; one category per abnormal image (uniform labels, no real table)."""
    if shared not in range(len(PAIR_SIGNS[0]) + 1):
        raise ValueError(f"a pair world shares 0 to {len(PAIR_SIGNS[0])} signs, not {shared!r}")
    a, own = PAIR_SIGNS
    b = a[:shared] + own[shared:]
    used = set(a) | set(b)
    return ModalitySpec(
        name=f"pairs{shared}", dataset="", title=f"Chest radiograph, two findings sharing {shared} of 3 signs",
        categories=PAIR_CATEGORIES, signs={i: s for i, s in CHEST.signs.items() if i in used},
        category_signs={PAIR_CATEGORIES[0]: a, PAIR_CATEGORIES[1]: b}, multi_label=False, renderer="chest",
        label_source="uniform")


def get_modality(name: str) -> ModalitySpec:
    if name.startswith("pairs") and name[5:].isdigit():
        return pair_modality(int(name[5:]))
    if name not in MODALITIES:
        raise ValueError(f"unknown phantom modality {name!r}; choose one of {', '.join(MODALITIES)} "
                         f"or pairs0 … pairs{len(PAIR_SIGNS[0])}")
    return MODALITIES[name]
