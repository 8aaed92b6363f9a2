#!/usr/bin/env bash
# Reduced-budget reproduction of the binary-network comparison on real Fashion-MNIST:
# 4 estimators (Decoupled ST tau_f=0.1/tau_b=0.7, identity ST, softmax ST, ST Gumbel-Softmax)
# x SEEDS x EPOCHS epochs of recipes/binary_fashion_mnist.yaml, then the test accuracy of
# each run's best-val/loss checkpoint, and a summary table (mean +- std over seeds).
#
#   bash benchmarks/reproduce.sh                       # 4 x 3 runs of 5 epochs
#   EPOCHS=100 SEEDS="0 1 2 3 4" bash benchmarks/reproduce.sh   # the paper's budget
#
# Env: EPOCHS (5), SEEDS ("0 1 2"), ESTIMATORS ("decoupled identity softmax gumbel_st"),
# DATA_DIR (data), OUT (runs/reproduce), PYTHON (python), EXTRA (more CLI overrides,
# e.g. "--trainer.accelerator=gpu --data.num_workers=4").
# Data: imported from /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist)
# when present, else downloaded by torchvision.
set -euo pipefail
cd "$(dirname "$0")/.."

EPOCHS=${EPOCHS:-5}
SEEDS=${SEEDS:-"0 1 2"}
ESTIMATORS=${ESTIMATORS:-"decoupled identity softmax gumbel_st"}
DATA_DIR=${DATA_DIR:-data}
OUT=${OUT:-runs/reproduce}
PYTHON=${PYTHON:-python}
EXTRA=${EXTRA:-}
CLI="$PYTHON -m lightning_discrete"

download=""
if [ ! -f "$DATA_DIR/FashionMNIST/raw/train-images-idx3-ubyte" ]; then
    if [ -d /usr/share/datasets/fashion-mnist ]; then
        $CLI import-idx /usr/share/datasets/fashion-mnist "$DATA_DIR" --dataset FashionMNIST
    else
        download="--data.download=true"
    fi
fi

for est in $ESTIMATORS; do
    for seed in $SEEDS; do
        dir="$OUT/$est/seed$seed"
        if [ -f "$dir/test.log" ]; then echo "skip $dir (done)"; continue; fi
        mkdir -p "$dir"
        echo "== $est seed $seed -> $dir"
        start=$(date +%s)
        # shellcheck disable=SC2086
        $CLI fit --config recipes/binary_fashion_mnist.yaml --config "recipes/estimators/$est.yaml" \
            --data.data_dir="$DATA_DIR" $download --seed_everything="$seed" \
            --trainer.max_epochs="$EPOCHS" --trainer.default_root_dir="$dir" --trainer.logger=false \
            --trainer.enable_progress_bar=false $EXTRA > "$dir/fit.log" 2>&1 || { tail -5 "$dir/fit.log"; exit 1; }
        echo "   fit: $(( $(date +%s) - start ))s"
        # shellcheck disable=SC2086
        $CLI test --config "$dir/config.yaml" --ckpt_path "$dir/checkpoints/best.ckpt" \
            --trainer.logger=false --trainer.enable_progress_bar=false \
            --trainer.default_root_dir="$dir/test" $EXTRA > "$dir/test.log.tmp" 2>&1
        mv "$dir/test.log.tmp" "$dir/test.log"
    done
done

$PYTHON - "$OUT" $ESTIMATORS <<'EOF'
import glob, os, re, statistics, sys
out, estimators = sys.argv[1], sys.argv[2:]
pat = {k: re.compile(rf"test/{k}\W+([0-9.eE+-]+)") for k in ("acc", "loss")}
print(f"\n{'estimator':<12} {'runs':>4} {'test acc':>16} {'test loss':>16}")
for est in estimators:
    res = {"acc": [], "loss": []}
    for log in sorted(glob.glob(os.path.join(out, est, "seed*", "test.log"))):
        text = open(log).read()
        for k, p in pat.items():
            m = p.search(text)
            if m:
                res[k].append(float(m.group(1)))
    def fmt(v):
        if not v:
            return "-"
        return f"{statistics.fmean(v):.4f} +- {statistics.stdev(v) if len(v) > 1 else 0:.4f}"
    print(f"{est:<12} {len(res['acc']):>4} {fmt(res['acc']):>16} {fmt(res['loss']):>16}")
EOF
