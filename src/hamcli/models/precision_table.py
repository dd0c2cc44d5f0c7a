"""The CPU training precision table: for each kind of CPU bf16 support, each architecture's precision.

Made by `bench/precision_table.py` (one training step of each variant, batch 32, timed on a quiet
machine; results in `bench/results/precision_table.jsonl`, with the CPU and the date): a variant replaces
fp32 only where it was at least 1.25x faster. `hamcli train --precision auto` reads it; an architecture or
CPU class without a row trains in fp32 + channels-last. Columns (what `cpu_bf16_class` reads from the CPU
flags): `amx` AMX tiles (Intel Xeon 4th generation on), `avx512_bf16` AVX-512 BF16 without AMX (AMD EPYC
Zen 4 on, Intel Cooper Lake), `none` bf16 emulated. Only the `amx` column has been measured (Intel Xeon,
2 cores, torch 2.14.1, 2026-12-06): the others train every architecture in fp32 + channels-last.
"""

_BF16 = "bf16 + channels-last"
_FP32 = "fp32 + channels-last"

TRAIN: dict[str, dict[str, str]] = {
    # step ms (fp32 / fp32 + channels-last / bf16 + channels-last), batch 32, lenet and cnn at 64 px, the rest 150
    "amx": {
        "lenet": _BF16,  # 66 / 42 / 19
        "cnn": _BF16,  # 332 / 212 / 84
        "efficientnet_lite0": _FP32,  # 1016 / 674 / 858: depthwise convolutions gain nothing from AMX
        "efficientnet_lite1": _FP32,  # 1212 / 847 / 1112
        "efficientnet_lite2": _FP32,  # 1345 / 978 / 1204
        "resnet18": _BF16,  # 774 / 695 / 287
        "resnet50": _BF16,  # 2600 / 2224 / 918
        "mobilenet_v2": _FP32,  # 841 / 610 / 561: bf16 only 1.09x faster
        "mobilenet_v3_small": _FP32,  # 231 / 166 / 290
        "mobilenet_v3_large": _FP32,  # 596 / 444 / 637
        "efficientnet_b0": _FP32,  # 1252 / 910 / 1095
        "densenet121": _BF16,  # 2006 / 1691 / 920
        "convnext_tiny": _BF16,  # 2164 / 2228 / 1414
    },
}
