"""Pretrained-weights references, checkable without torch (the login node may lack it).

``model.weights`` is one of:

* a torchvision weights name: ``DEFAULT``, ``IMAGENET1K_V1``, ``IMAGENET1K_V2`` (an entry of the model's
  weights enum), ``resnet18.IMAGENET1K_V1`` (MODEL.ENTRY, the syntax of ``hpcnn weights fetch``) or the
  full enum name ``ResNet18_Weights.IMAGENET1K_V1``. An entry is written in capitals; anything with a
  ``/`` or in lower case is a path (write ``./DEFAULT`` for a file that happens to be called that);
* a ``.pth``/``.pt`` state_dict file, or an hpcnn run directory (``checkpoints/best.pt``, else
  ``checkpoints/model_final.pt``);
* null: random initialisation.

Named weights live in a cache laid out like ``TORCH_HOME`` (``<cache>/hub/checkpoints/<file>``, the file
name taken from the weights' URL), so torchvision finds them there too. Jobs never download: a name whose
file is not cached is a ConfigError naming the ``hpcnn weights fetch`` command, raised by the login-node
pre-flight before anything is queued. The name -> file table is a snapshot of torchvision's weights enums
(0.29, ``WEIGHTS_SNAPSHOT``); when torchvision is importable its live enums are used, so newer weights
work too. Regenerate the snapshot with ``python -m hpcnn.config.weights_names``; a test compares them.
"""
from __future__ import annotations

import difflib
import functools
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import ConfigError

TORCHVISION_BASE_URL = "https://download.pytorch.org/models/"
MIRROR_ENV = "HPCNN_WEIGHTS_MIRROR"
HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")  # torch.hub.HASH_REGEX: the SHA-256 prefix in a file name
RUN_DIR_FILES = ("checkpoints/best.pt", "checkpoints/model_final.pt")  # first one present wins
_NAME = re.compile(r"^(?:([A-Za-z][A-Za-z0-9_]*)\.)?([A-Z][A-Z0-9_]*)$")
_FETCH_NAME = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)(?:\.([A-Z][A-Z0-9_]*))?$")

# model: (weights enum, entry DEFAULT points to, {entry: file name under TORCHVISION_BASE_URL})
WEIGHTS_SNAPSHOT = {
    "alexnet": ("AlexNet_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "alexnet-owt-7be5be79.pth"}),
    "convnext_base": ("ConvNeXt_Base_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "convnext_base-6075fbad.pth"}),
    "convnext_large": ("ConvNeXt_Large_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "convnext_large-ea097f82.pth"}),
    "convnext_small": ("ConvNeXt_Small_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "convnext_small-0c510722.pth"}),
    "convnext_tiny": ("ConvNeXt_Tiny_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "convnext_tiny-983f1562.pth"}),
    "densenet121": ("DenseNet121_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "densenet121-a639ec97.pth"}),
    "densenet161": ("DenseNet161_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "densenet161-8d451a50.pth"}),
    "densenet169": ("DenseNet169_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "densenet169-b2777c0a.pth"}),
    "densenet201": ("DenseNet201_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "densenet201-c1103571.pth"}),
    "efficientnet_b0": ("EfficientNet_B0_Weights", "IMAGENET1K_V1", {
        "IMAGENET1K_V1": "efficientnet_b0_rwightman-7f5810bc.pth"}),
    "efficientnet_b1": ("EfficientNet_B1_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "efficientnet_b1_rwightman-bac287d4.pth", "IMAGENET1K_V2": "efficientnet_b1-c27df63c.pth"}),
    "efficientnet_b2": ("EfficientNet_B2_Weights", "IMAGENET1K_V1", {
        "IMAGENET1K_V1": "efficientnet_b2_rwightman-c35c1473.pth"}),
    "efficientnet_b3": ("EfficientNet_B3_Weights", "IMAGENET1K_V1", {
        "IMAGENET1K_V1": "efficientnet_b3_rwightman-b3899882.pth"}),
    "efficientnet_b4": ("EfficientNet_B4_Weights", "IMAGENET1K_V1", {
        "IMAGENET1K_V1": "efficientnet_b4_rwightman-23ab8bcd.pth"}),
    "efficientnet_b5": ("EfficientNet_B5_Weights", "IMAGENET1K_V1", {
        "IMAGENET1K_V1": "efficientnet_b5_lukemelas-1a07897c.pth"}),
    "efficientnet_b6": ("EfficientNet_B6_Weights", "IMAGENET1K_V1", {
        "IMAGENET1K_V1": "efficientnet_b6_lukemelas-24a108a5.pth"}),
    "efficientnet_b7": ("EfficientNet_B7_Weights", "IMAGENET1K_V1", {
        "IMAGENET1K_V1": "efficientnet_b7_lukemelas-c5b4e57e.pth"}),
    "efficientnet_v2_l": ("EfficientNet_V2_L_Weights", "IMAGENET1K_V1", {
        "IMAGENET1K_V1": "efficientnet_v2_l-59c71312.pth"}),
    "efficientnet_v2_m": ("EfficientNet_V2_M_Weights", "IMAGENET1K_V1", {
        "IMAGENET1K_V1": "efficientnet_v2_m-dc08266a.pth"}),
    "efficientnet_v2_s": ("EfficientNet_V2_S_Weights", "IMAGENET1K_V1", {
        "IMAGENET1K_V1": "efficientnet_v2_s-dd5fe13b.pth"}),
    "googlenet": ("GoogLeNet_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "googlenet-1378be20.pth"}),
    "inception_v3": ("Inception_V3_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "inception_v3_google-0cc3c7bd.pth"}),
    "maxvit_t": ("MaxVit_T_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "maxvit_t-bc5ab103.pth"}),
    "mnasnet0_5": ("MNASNet0_5_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "mnasnet0.5_top1_67.823-3ffadce67e.pth"}),
    "mnasnet0_75": ("MNASNet0_75_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "mnasnet0_75-7090bc5f.pth"}),
    "mnasnet1_0": ("MNASNet1_0_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "mnasnet1.0_top1_73.512-f206786ef8.pth"}),
    "mnasnet1_3": ("MNASNet1_3_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "mnasnet1_3-a4c69d6f.pth"}),
    "mobilenet_v2": ("MobileNet_V2_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "mobilenet_v2-b0353104.pth", "IMAGENET1K_V2": "mobilenet_v2-7ebf99e0.pth"}),
    "mobilenet_v3_large": ("MobileNet_V3_Large_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "mobilenet_v3_large-8738ca79.pth", "IMAGENET1K_V2": "mobilenet_v3_large-5c1a4163.pth"}),
    "mobilenet_v3_small": ("MobileNet_V3_Small_Weights", "IMAGENET1K_V1", {
        "IMAGENET1K_V1": "mobilenet_v3_small-047dcff4.pth"}),
    "regnet_x_16gf": ("RegNet_X_16GF_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "regnet_x_16gf-2007eb11.pth", "IMAGENET1K_V2": "regnet_x_16gf-ba3796d7.pth"}),
    "regnet_x_1_6gf": ("RegNet_X_1_6GF_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "regnet_x_1_6gf-e3633e7f.pth", "IMAGENET1K_V2": "regnet_x_1_6gf-a12f2b72.pth"}),
    "regnet_x_32gf": ("RegNet_X_32GF_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "regnet_x_32gf-9d47f8d0.pth", "IMAGENET1K_V2": "regnet_x_32gf-6eb8fdc6.pth"}),
    "regnet_x_3_2gf": ("RegNet_X_3_2GF_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "regnet_x_3_2gf-f342aeae.pth", "IMAGENET1K_V2": "regnet_x_3_2gf-7071aa85.pth"}),
    "regnet_x_400mf": ("RegNet_X_400MF_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "regnet_x_400mf-adf1edd5.pth", "IMAGENET1K_V2": "regnet_x_400mf-62229a5f.pth"}),
    "regnet_x_800mf": ("RegNet_X_800MF_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "regnet_x_800mf-ad17e45c.pth", "IMAGENET1K_V2": "regnet_x_800mf-94a99ebd.pth"}),
    "regnet_x_8gf": ("RegNet_X_8GF_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "regnet_x_8gf-03ceed89.pth", "IMAGENET1K_V2": "regnet_x_8gf-2b70d774.pth"}),
    "regnet_y_128gf": ("RegNet_Y_128GF_Weights", "IMAGENET1K_SWAG_E2E_V1", {
        "IMAGENET1K_SWAG_E2E_V1": "regnet_y_128gf_swag-c8ce3e52.pth",
        "IMAGENET1K_SWAG_LINEAR_V1": "regnet_y_128gf_lc_swag-cbe8ce12.pth"}),
    "regnet_y_16gf": ("RegNet_Y_16GF_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "regnet_y_16gf-9e6ed7dd.pth", "IMAGENET1K_V2": "regnet_y_16gf-3e4a00f9.pth",
        "IMAGENET1K_SWAG_E2E_V1": "regnet_y_16gf_swag-43afe44d.pth",
        "IMAGENET1K_SWAG_LINEAR_V1": "regnet_y_16gf_lc_swag-f3ec0043.pth"}),
    "regnet_y_1_6gf": ("RegNet_Y_1_6GF_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "regnet_y_1_6gf-b11a554e.pth", "IMAGENET1K_V2": "regnet_y_1_6gf-0d7bc02a.pth"}),
    "regnet_y_32gf": ("RegNet_Y_32GF_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "regnet_y_32gf-4dee3f7a.pth", "IMAGENET1K_V2": "regnet_y_32gf-8db6d4b5.pth",
        "IMAGENET1K_SWAG_E2E_V1": "regnet_y_32gf_swag-04fdfa75.pth",
        "IMAGENET1K_SWAG_LINEAR_V1": "regnet_y_32gf_lc_swag-e1583746.pth"}),
    "regnet_y_3_2gf": ("RegNet_Y_3_2GF_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "regnet_y_3_2gf-b5a9779c.pth", "IMAGENET1K_V2": "regnet_y_3_2gf-9180c971.pth"}),
    "regnet_y_400mf": ("RegNet_Y_400MF_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "regnet_y_400mf-c65dace8.pth", "IMAGENET1K_V2": "regnet_y_400mf-e6988f5f.pth"}),
    "regnet_y_800mf": ("RegNet_Y_800MF_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "regnet_y_800mf-1b27b58c.pth", "IMAGENET1K_V2": "regnet_y_800mf-58fc7688.pth"}),
    "regnet_y_8gf": ("RegNet_Y_8GF_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "regnet_y_8gf-d0d0e4a8.pth", "IMAGENET1K_V2": "regnet_y_8gf-dc2b1b54.pth"}),
    "resnet101": ("ResNet101_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "resnet101-63fe2227.pth", "IMAGENET1K_V2": "resnet101-cd907fc2.pth"}),
    "resnet152": ("ResNet152_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "resnet152-394f9c45.pth", "IMAGENET1K_V2": "resnet152-f82ba261.pth"}),
    "resnet18": ("ResNet18_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "resnet18-f37072fd.pth"}),
    "resnet34": ("ResNet34_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "resnet34-b627a593.pth"}),
    "resnet50": ("ResNet50_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "resnet50-0676ba61.pth", "IMAGENET1K_V2": "resnet50-11ad3fa6.pth"}),
    "resnext101_32x8d": ("ResNeXt101_32X8D_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "resnext101_32x8d-8ba56ff5.pth", "IMAGENET1K_V2": "resnext101_32x8d-110c445d.pth"}),
    "resnext101_64x4d": ("ResNeXt101_64X4D_Weights", "IMAGENET1K_V1", {
        "IMAGENET1K_V1": "resnext101_64x4d-173b62eb.pth"}),
    "resnext50_32x4d": ("ResNeXt50_32X4D_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "resnext50_32x4d-7cdf4587.pth", "IMAGENET1K_V2": "resnext50_32x4d-1a0047aa.pth"}),
    "shufflenet_v2_x0_5": ("ShuffleNet_V2_X0_5_Weights", "IMAGENET1K_V1", {
        "IMAGENET1K_V1": "shufflenetv2_x0.5-f707e7126e.pth"}),
    "shufflenet_v2_x1_0": ("ShuffleNet_V2_X1_0_Weights", "IMAGENET1K_V1", {
        "IMAGENET1K_V1": "shufflenetv2_x1-5666bf0f80.pth"}),
    "shufflenet_v2_x1_5": ("ShuffleNet_V2_X1_5_Weights", "IMAGENET1K_V1", {
        "IMAGENET1K_V1": "shufflenetv2_x1_5-3c479a10.pth"}),
    "shufflenet_v2_x2_0": ("ShuffleNet_V2_X2_0_Weights", "IMAGENET1K_V1", {
        "IMAGENET1K_V1": "shufflenetv2_x2_0-8be3c8ee.pth"}),
    "squeezenet1_0": ("SqueezeNet1_0_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "squeezenet1_0-b66bff10.pth"}),
    "squeezenet1_1": ("SqueezeNet1_1_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "squeezenet1_1-b8a52dc0.pth"}),
    "swin_b": ("Swin_B_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "swin_b-68c6b09e.pth"}),
    "swin_s": ("Swin_S_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "swin_s-5e29d889.pth"}),
    "swin_t": ("Swin_T_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "swin_t-704ceda3.pth"}),
    "swin_v2_b": ("Swin_V2_B_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "swin_v2_b-781e5279.pth"}),
    "swin_v2_s": ("Swin_V2_S_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "swin_v2_s-637d8ceb.pth"}),
    "swin_v2_t": ("Swin_V2_T_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "swin_v2_t-b137f0e2.pth"}),
    "vgg11": ("VGG11_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "vgg11-8a719046.pth"}),
    "vgg11_bn": ("VGG11_BN_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "vgg11_bn-6002323d.pth"}),
    "vgg13": ("VGG13_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "vgg13-19584684.pth"}),
    "vgg13_bn": ("VGG13_BN_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "vgg13_bn-abd245e5.pth"}),
    "vgg16": ("VGG16_Weights", "IMAGENET1K_V1", {
        "IMAGENET1K_V1": "vgg16-397923af.pth", "IMAGENET1K_FEATURES": "vgg16_features-amdegroot-88682ab5.pth"}),
    "vgg16_bn": ("VGG16_BN_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "vgg16_bn-6c64b313.pth"}),
    "vgg19": ("VGG19_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "vgg19-dcbb9e9d.pth"}),
    "vgg19_bn": ("VGG19_BN_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "vgg19_bn-c79401a0.pth"}),
    "vit_b_16": ("ViT_B_16_Weights", "IMAGENET1K_V1", {
        "IMAGENET1K_V1": "vit_b_16-c867db91.pth", "IMAGENET1K_SWAG_E2E_V1": "vit_b_16_swag-9ac1b537.pth",
        "IMAGENET1K_SWAG_LINEAR_V1": "vit_b_16_lc_swag-4e70ced5.pth"}),
    "vit_b_32": ("ViT_B_32_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "vit_b_32-d86f8d99.pth"}),
    "vit_h_14": ("ViT_H_14_Weights", "IMAGENET1K_SWAG_E2E_V1", {
        "IMAGENET1K_SWAG_E2E_V1": "vit_h_14_swag-80465313.pth",
        "IMAGENET1K_SWAG_LINEAR_V1": "vit_h_14_lc_swag-c1eb923e.pth"}),
    "vit_l_16": ("ViT_L_16_Weights", "IMAGENET1K_V1", {
        "IMAGENET1K_V1": "vit_l_16-852ce7e3.pth", "IMAGENET1K_SWAG_E2E_V1": "vit_l_16_swag-4f3808c9.pth",
        "IMAGENET1K_SWAG_LINEAR_V1": "vit_l_16_lc_swag-4d563306.pth"}),
    "vit_l_32": ("ViT_L_32_Weights", "IMAGENET1K_V1", {"IMAGENET1K_V1": "vit_l_32-c7638314.pth"}),
    "wide_resnet101_2": ("Wide_ResNet101_2_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "wide_resnet101_2-32ee1156.pth", "IMAGENET1K_V2": "wide_resnet101_2-d733dc28.pth"}),
    "wide_resnet50_2": ("Wide_ResNet50_2_Weights", "IMAGENET1K_V2", {
        "IMAGENET1K_V1": "wide_resnet50_2-95faca4d.pth", "IMAGENET1K_V2": "wide_resnet50_2-9ba9bcbe.pth"}),
}


@dataclass(frozen=True)
class WeightsRef:
    """One torchvision weights entry and the file it is stored in."""

    model: str      # resnet18
    enum: str       # ResNet18_Weights
    entry: str      # IMAGENET1K_V1 (DEFAULT already resolved)
    file_name: str  # resnet18-f37072fd.pth
    is_default: bool = False

    @property
    def name(self) -> str:
        """The MODEL.ENTRY name ``hpcnn weights fetch`` takes."""
        return f"{self.model}.{self.entry}"

    @property
    def url(self) -> str:
        return TORCHVISION_BASE_URL + self.file_name

    @property
    def hash_prefix(self) -> str:
        """The SHA-256 prefix the file name carries, found as torch.hub's check_hash finds it ('' if none)."""
        match = HASH_REGEX.search(self.file_name)
        return match.group(1) if match else ""

    def source_url(self, mirror: str | None = None) -> str:
        """Where to download from: the official URL, or the same file name under a mirror (URL or directory)."""
        if not mirror:
            return self.url
        if "://" not in mirror:
            mirror = Path(mirror).expanduser().absolute().as_uri()
        return mirror.rstrip("/") + "/" + self.file_name


# ---------------------------------------------------------------- the name -> file table
def live_table(tvm) -> dict:
    """The snapshot's shape, read from an imported ``torchvision.models``."""
    table = {}
    for model in tvm.list_models(module=tvm):
        enum = tvm.get_model_weights(model)
        files = {w.name: w.url.rsplit("/", 1)[1] for w in enum}
        table[model] = (enum.__name__, enum.DEFAULT.name, files)
    return table


@functools.lru_cache(maxsize=1)
def weights_table() -> dict:
    """torchvision's weights when it is importable, else the snapshot."""
    try:
        import torchvision.models as tvm
    except Exception:  # no torch on this machine: the snapshot it is
        return WEIGHTS_SNAPSHOT
    return live_table(tvm)


def format_snapshot(table: dict, width: int = 118) -> str:
    """The table as the Python source of WEIGHTS_SNAPSHOT (one model per entry, wrapped at ``width``)."""
    lines = ["WEIGHTS_SNAPSHOT = {"]
    for model, (enum, default, files) in table.items():
        items = [f'"{entry}": "{file}"' for entry, file in files.items()]
        one = f'    "{model}": ("{enum}", "{default}", {{{", ".join(items)}}}),'
        if len(one) <= width:
            lines.append(one)
            continue
        lines.append(f'    "{model}": ("{enum}", "{default}", {{')
        row = "       "
        for i, item in enumerate(items):
            piece = f" {item}" + ("," if i < len(items) - 1 else "}),")
            if len(row) + len(piece) > width:
                lines.append(row)
                row = "       "
            row += piece
        lines.append(row)
    lines.append("}")
    return "\n".join(lines)


def _ref(model: str, entry: str, table: dict) -> WeightsRef:
    enum, default, files = table[model]
    entry = default if entry == "DEFAULT" else entry
    return WeightsRef(model, enum, entry, files[entry], is_default=entry == default)


def refs_for_file(file_name: str, table: dict | None = None) -> list[WeightsRef]:
    """Which weights entries are stored in ``file_name`` (several entries may share one file)."""
    table = weights_table() if table is None else table
    return [_ref(model, entry, table) for model, (_, _, files) in table.items()
            for entry, name in files.items() if name == file_name]


# ---------------------------------------------------------------- parsing names
def is_weights_name(value: str | None) -> bool:
    """``DEFAULT``, ``IMAGENET1K_V2``, ``resnet18.IMAGENET1K_V1``, ``ResNet18_Weights.IMAGENET1K_V1``: not a path."""
    return bool(value) and _NAME.match(str(value).strip()) is not None


def _entries_hint(model: str, table: dict) -> str:
    _, default, files = table[model]
    return f"{model} has DEFAULT (= {default}), " + ", ".join(files)


def _check_entry(model: str, entry: str, table: dict, where: str) -> None:
    files = table[model][2]
    if entry != "DEFAULT" and entry not in files:
        close = difflib.get_close_matches(entry, list(files), n=1, cutoff=0.6)
        hint = (f"did you mean {close[0]}? " if close else "") + _entries_hint(model, table)
        raise ConfigError(f"torchvision has no weights {entry} for {model}", where, hint)


def _model_of_prefix(prefix: str, table: dict) -> str | None:
    if prefix in table:
        return prefix
    return next((model for model, (enum, _, _) in table.items() if enum == prefix), None)


def weights_ref(model: str, value: str, where: str = "model.weights", table: dict | None = None) -> WeightsRef:
    """Resolve ``model.weights`` (a weights name) for ``model.name``; ConfigError with a hint when it cannot be."""
    table = weights_table() if table is None else table
    match = _NAME.match(value.strip())
    if not match:
        raise ConfigError(f"'{value}' is not a torchvision weights name", where,
                          "write DEFAULT, IMAGENET1K_V1, MODEL.ENTRY or a path to a file or run directory")
    prefix, entry = match.groups()
    if model not in table:
        raise ConfigError(f"model.weights: {value} names torchvision weights, but model.name={model} has none",
                          where, "use a .pth/.pt state_dict file or an hpcnn run directory, or null")
    if prefix is not None:
        named = _model_of_prefix(prefix, table)
        if named is None:
            raise ConfigError(f"unknown weights '{value}'", where,
                              f"write {entry} or {model}.{entry} (the weights of model.name={model})")
        if named != model:
            raise ConfigError(f"model.weights: {value} are the weights of {named}, but model.name is {model}",
                              where, f"set model.name={named}, or use {model}'s own: {_entries_hint(model, table)}")
    _check_entry(model, entry, table, where)
    return _ref(model, entry, table)


def parse_weights_name(text: str, where: str = "hpcnn weights fetch", table: dict | None = None) -> WeightsRef:
    """A NAME of ``hpcnn weights fetch``: ``MODEL`` (its DEFAULT), ``MODEL.ENTRY`` or ``Enum_Weights.ENTRY``."""
    table = weights_table() if table is None else table
    match = _FETCH_NAME.match(text.strip())
    model = match and _model_of_prefix(match.group(1), table)
    if not model:
        known = list(table) + [enum for enum, _, _ in table.values()]
        close = difflib.get_close_matches(text.split(".")[0], known, n=1, cutoff=0.6)
        raise ConfigError(f"unknown weights name '{text}'", where,
                          (f"did you mean {close[0]}? " if close else "") +
                          "write MODEL.ENTRY, e.g. resnet18.IMAGENET1K_V1, resnet50.DEFAULT, or just resnet50")
    entry = match.group(2) or "DEFAULT"
    _check_entry(model, entry, table, where)
    return _ref(model, entry, table)


# ---------------------------------------------------------------- the cache and the file a job reads
def cache_root(weights_cache: str | os.PathLike | None = None) -> Path:
    """``model.weights_cache``, else $TORCH_HOME, else torch's own default ($XDG_CACHE_HOME/torch, ~/.cache/torch)."""
    if weights_cache:
        return Path(weights_cache).expanduser().absolute()
    if os.environ.get("TORCH_HOME"):
        return Path(os.environ["TORCH_HOME"]).expanduser().absolute()
    return (Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "torch").absolute()


def checkpoints_dir(cache: str | os.PathLike) -> Path:
    """Where torch.hub (and so torchvision) looks for downloaded weights under TORCH_HOME=cache."""
    return Path(cache) / "hub" / "checkpoints"


def fetch_command(refs, cache: str | os.PathLike) -> str:
    """The exact login-node command that puts ``refs`` into ``cache``."""
    names = " ".join(ref.name for ref in refs)
    return f"hpcnn weights fetch {names} --cache {shlex.quote(str(cache))}"


def run_dir_weights(run_dir: Path, where: str = "model.weights") -> Path:
    """The weights file of an hpcnn run directory: checkpoints/best.pt, else checkpoints/model_final.pt."""
    for name in RUN_DIR_FILES:
        if (run_dir / name).is_file():
            return run_dir / name
    raise ConfigError(f"run directory {run_dir} has no {' or '.join(RUN_DIR_FILES)}", where,
                      "point model.weights at a run that finished at least one epoch, or at a .pth/.pt file")


def run_dir_model_name(weights_file: Path) -> str | None:
    """model.name of the run a checkpoints/*.pt file belongs to (its config.resolved.yaml), if known."""
    weights_file = Path(weights_file)
    if weights_file.parent.name != "checkpoints":
        return None
    config = weights_file.parent.parent / "config.resolved.yaml"
    try:
        return (yaml.safe_load(config.read_text()) or {}).get("model", {}).get("name")
    except (OSError, yaml.YAMLError, AttributeError):
        return None


def weights_source(model_cfg, where: str = "model.weights") -> Path | None:
    """The file a job will load ``model.weights`` from, or None (random init); ConfigError when unusable.

    Never downloads: a weights name must already be in the cache.
    """
    value = model_cfg.weights
    if not value:
        return None
    if is_weights_name(value):
        ref = weights_ref(model_cfg.name, value, where)
        cache = cache_root(model_cfg.weights_cache)
        path = checkpoints_dir(cache) / ref.file_name
        if not path.is_file():
            raise ConfigError(f"pretrained weights {ref.name} are not in the cache: {path} does not exist", where,
                              f"jobs never download; on a login node run: {fetch_command([ref], cache)}")
        return path
    path = Path(os.path.expanduser(str(value)))
    if path.is_dir():
        return run_dir_weights(path, where)
    if not path.is_file():
        hint = "compute nodes usually have no internet: put the weights file in a shared directory"
        if str(value) in weights_table():
            hint = f"torchvision's weights are written in capitals: DEFAULT or {value}.DEFAULT"
        raise ConfigError(f"model.weights file not found: {path}", where, hint)
    return path


__all__ = ["HASH_REGEX", "MIRROR_ENV", "RUN_DIR_FILES", "TORCHVISION_BASE_URL", "WEIGHTS_SNAPSHOT", "WeightsRef",
           "cache_root", "checkpoints_dir", "fetch_command", "format_snapshot", "is_weights_name", "live_table",
           "parse_weights_name", "refs_for_file", "run_dir_model_name", "run_dir_weights", "weights_ref",
           "weights_source", "weights_table"]


if __name__ == "__main__":  # print a fresh snapshot from the installed torchvision
    print(format_snapshot(weights_table()))
