"""What each seed recipe scores as its project ran it (split by image) and when lesions cannot leak.

    python bench/recipes_bench.py [--data ../shared/ham10000-dev] [--recipes small-cnn-64 lenet-90-10 hmnist-cnn]
                                  [--fold K]   # one fold of a K-fold recipe, when all of them will not fit
                                  [--tag lite0 --train-args "--arch efficientnet_lite0" --prepare-args "--size 150"]

For every recipe, twice, exactly as a user would type it:
  * as the project did:  hamcli train --recipe NAME                       (its own split, by image)
  * honestly:            hamcli prepare --recipe NAME --group-by lesion --name NAME-by-lesion
                         hamcli train --recipe NAME --data NAME-by-lesion
then `hamcli evaluate RUN --json --ci` on that run's own test split (a K-fold family: the ensemble of
its folds). hmnist-cnn first builds hmnist_28_28_RGB.csv from the dev images with
`hamcli prepare --size 28 --export-hmnist` and imports it as the Kaggle file would be; that file has no
lesion ids, so its lesion-grouped twin is prepared from the same images (`--source ham10000`) at 28 px.
One JSON line per (recipe, split kind) goes to bench/results/recipes_bench.jsonl, with the CPU, the
weights the run started from (as its checkpoint records them) and the precision it trained in.
`--train-args` adds options to both `hamcli train` commands (an ImageNet recipe whose torchvision
weights cannot be had here runs with `--arch efficientnet_lite0`, the offline alternative its error
names) and `--prepare-args` to both `hamcli prepare` commands; `--tag` names such runs apart
(`NAME-TAG-by-image`).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from _results import emit

KEPT = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_roc_auc", "melanoma_sensitivity")


def hamcli(args: list[str], env: dict, capture: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hamcli", *args], env=env, text=True,
                          stdout=subprocess.PIPE if capture else subprocess.DEVNULL, stderr=subprocess.PIPE)


def leaked_lesions(home: Path, data: str, exported_from: str | None = None) -> dict:
    """Test lesions of a prepared dataset that also have images in its training part. An hmnist import
    has no lesion ids; its row i is row i of the prepared dataset it was exported from, which has them."""
    lesions = ("m.lesion_id" if exported_from is None else
               f"P.open({exported_from!r}).manifest.lesion_id.to_numpy()[[int(i.split('_')[1]) for i in m.image_id]]")
    code = ("import json; from hamcli.data.cache import PreparedDataset as P; "
            f"m = P.open({data!r}).manifest; lesion = {lesions}; test = set(lesion[m.split == 'test']); "
            "train = set(lesion[m.split == 'train']); "
            "print(json.dumps({'test_lesions': len(test), 'test_lesions_also_in_train': len(test & train)}))")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "HAMCLI_HOME": str(home)},
                          capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {"leak_count_error": done.stderr.strip()[-200:]}


def run_card(home: Path, run: str) -> dict:
    """What a finished run's checkpoint says it started from and trained in."""
    code = ("import json, sys; from hamcli.models.checkpoint import load; from hamcli.models.precision import "
            "Precision, describe; from hamcli.runs import resolve_run; d = resolve_run(sys.argv[1]); "
            "c = load(next(p for p in [d / 'best.pt', d / 'fold0' / 'best.pt'] if p.exists())); "
            "print(json.dumps({'started_from': c['started_from'], "
            "'train_precision': describe(Precision(**c['precision']))}))")
    done = subprocess.run([sys.executable, "-c", code, run], env={**os.environ, "HAMCLI_HOME": str(home)},
                          capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {"card_error": done.stderr.strip()[-200:]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("../shared/ham10000-dev"))
    parser.add_argument("--home", type=Path, default=Path("/tmp/hamcli-recipes"))
    parser.add_argument("--recipes", nargs="*", default=["small-cnn-64", "lenet-90-10", "hmnist-cnn",
                                                         "mobilenet-transfer", "resnet18-finetune"])
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--fold", type=int, default=None,
                        help="train only this fold of a recipe that trains every fold (hamcli train --fold K)")
    parser.add_argument("--train-args", default="", help="options added to both hamcli train commands")
    parser.add_argument("--prepare-args", default="", help="options added to both hamcli prepare commands "
                        "(the by-image data is then prepared apart, as NAME-TAG-by-image)")
    parser.add_argument("--tag", default="", help="names the runs NAME-TAG-by-KIND (with --train-args)")
    args = parser.parse_args()
    env = {**os.environ, "HAMCLI_HOME": str(args.home)}
    if not (args.home / "data" / "datasets" / "ham10000").exists():
        hamcli(["download", "--from", str(args.data / "images"), "--metadata",
                str(args.data / "HAM10000_metadata.csv")], env).check_returncode()
    for name in args.recipes:
        if name == "hmnist-cnn" and not (args.home / "data" / "datasets" / "hmnist").exists():
            csv = args.home / "hmnist_28_28_RGB.csv"
            hamcli(["prepare", "--split", "90/10", "--size", "28", "--name", "hmnist-export",
                    "--export-hmnist", str(csv), "-q"], env).check_returncode()
            hamcli(["download", "--from", str(csv), "--name", "hmnist"], env).check_returncode()
        for kind in ("image", "lesion"):
            run = f"{name}{'-' + args.tag if args.tag else ''}-by-{kind}"
            train = ["train", "--recipe", name, "--name", run, "-q", "--overwrite",
                     *(["--fold", str(args.fold)] if args.fold is not None else []), *shlex.split(args.train_args)]
            prepare = None
            if kind == "lesion" or args.prepare_args:
                prepare = ["prepare", "--recipe", name, *(["--group-by", "lesion"] if kind == "lesion" else []),
                           "--name", run, "--overwrite", "-q", *shlex.split(args.prepare_args)]
                if name == "hmnist-cnn" and kind == "lesion":  # Kaggle's hmnist CSV has no lesion ids: the same
                    prepare += ["--source", "ham10000"]          # images at 28 px
                hamcli(prepare, env).check_returncode()
                train += ["--data", run]
            start = time.perf_counter()
            done = hamcli(train, env)
            minutes = round((time.perf_counter() - start) / 60, 1)
            row = {"recipe": name, **({"tag": args.tag} if args.tag else {}), "split_by": kind,
                   "train": "hamcli " + " ".join(train),
                   "prepare": "hamcli " + " ".join(prepare) if prepare else "(the recipe's own, by image)",
                   "wall_minutes": minutes}
            if done.returncode:
                row["error"] = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
                emit(row)
                break  # the same reason stops the other split kind
            report = hamcli(["evaluate", run, "--json", "--ci", "--bootstrap", str(args.bootstrap)], env,
                            capture=True)
            report.check_returncode()
            m = json.loads(report.stdout)["metrics"]
            row |= {k: round(m[k], 4) for k in KEPT} | {"images": m["images"]}
            row |= {"baseline_accuracy": round(m["baseline"]["accuracy"], 4)} | run_card(args.home, run)
            if name == "hmnist-cnn" and kind == "image":  # lesion ids from the export the CSV was written from
                row |= leaked_lesions(args.home, f"recipe-{name}", exported_from="hmnist-export")
            else:
                row |= leaked_lesions(args.home, run if prepare else f"recipe-{name}")
            row["ci95"] = {k: [round(v[0], 4), round(v[1], 4)] for k, v in m.get("ci95", {}).items() if k in KEPT}
            emit(row)


if __name__ == "__main__":
    main()
