#!/usr/bin/env bash
# Every supported family's smallest model, random weights, --mode all on 4 sample images: one line per family.
# usage: bash tools/family_check.sh OUT_DIR [extra eval.py flags]
set -u
out=${1:?usage: family_check.sh OUT_DIR [eval.py flags]}; shift
mkdir -p "$out"
python -c "from qflash_eval.families import SUPPORTED_FAMILIES as F; print('\n'.join(F.values()))" | while read -r model; do
  if python eval.py -m "$model" --weights random --mode all --num-samples 4 --data ../shared/datasets/imagenet-sample \
      --results "$out/$model.json" "$@" > "$out/$model.log" 2>&1; then
    echo "$model ok"
  else
    echo "$model FAILED: $(tail -1 "$out/$model.log")"
  fi
done
