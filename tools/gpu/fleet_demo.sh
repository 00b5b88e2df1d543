#!/usr/bin/env bash
# A fleet in miniature on a machine with two GPUs: one `strata serve`, two
# workers (one per GPU, separate processes). A conversation served by the
# worker on GPU 0 (turn 1: prompt + greedy reply, its chunks saved to the
# node) continues on GPU 1, which loads its history instead of recomputing
# it; the tokens it decodes must equal those of GPU 0 continuing with the
# same history (the K/V it computed in turn 1, which is what it saved). For
# information, GPU 0 also recomputes the whole conversation: GEMMs of other
# shapes round differently, so greedy tokens may part at a near-tie.
#
# usage (repository root, after `ONLY=worker tools/gpu/run_gpu.sh package`
# here and unpacking .devbin there): tools/gpu/fleet_demo.sh [OUTDIR]
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${1:-/tmp/strata_fleet}"
mkdir -p "$out"
work="$(mktemp -d)"
cublas=/usr/local/cuda/lib64
export LD_LIBRARY_PATH="$PWD/.devbin/lib:$cublas" UCX_MODULE_DIR="$PWD/.devbin/ucx"
nvidia-smi --query-gpu=index,name --format=csv,noheader
./.devbin/strata serve --listen=127.0.0.1:0 --port_file="$work/port" --data_dir="$work/data" \
  --dram=2GiB --nvme=4GiB > "$work/serve.log" 2>&1 &
serve=$!
trap 'kill $serve 2>/dev/null; wait $serve 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 300); do [[ -s "$work/port" ]] && break; sleep 0.02; done
addr="127.0.0.1:$(cat "$work/port")"
python3 -c "import random; random.seed(7); print(' '.join(str(random.randrange(32000)) for _ in range(300)))" > "$work/turn1"
run() {  # GPU, tokens file, tag, flags...
  local gpu="$1" tokens="$2" tag="$3"
  shift 3
  CUDA_VISIBLE_DEVICES="$gpu" ./.devbin/strata_worker run --server="$addr" --shape=small \
    --tokens="$tokens" --out_tokens="$work/$tag.gen" "$@" | tee -a "$out/fleet_demo.log"
}
echo "== turn 1 on GPU 0 (saves its chunks)" | tee "$out/fleet_demo.log"
run 0 "$work/turn1" turn1 --decode=24 || exit 1
python3 -c "import random; random.seed(8); t1=open('$work/turn1').read().split(); r=open('$work/turn1.gen').read().split(); print(' '.join(t1 + r + [str(random.randrange(32000)) for _ in range(40)]))" > "$work/turn2"
echo "== turn 2 on GPU 1 (loads the history from the node)" | tee -a "$out/fleet_demo.log"
run 1 "$work/turn2" gpu1 --decode=32 --source=store --nosave || exit 1
if ! tail -1 "$out/fleet_demo.log" | grep -q 'loaded_tokens=[1-9]'; then
  echo "fleet demo: GPU 1 loaded nothing from the node" | tee -a "$out/fleet_demo.log"
  exit 1
fi
echo "== turn 2 on GPU 0, continuing with its own turn-1 K/V" | tee -a "$out/fleet_demo.log"
run 0 "$work/turn2" gpu0 --decode=32 --source=store --nosave || exit 1
echo "== turn 2 on GPU 0, recomputing the whole conversation (for information)" | tee -a "$out/fleet_demo.log"
run 0 "$work/turn2" recompute --decode=32 --source=none --nosave || exit 1
same_as_recompute="$(python3 -c "a=open('$work/recompute.gen').read().split(); b=open('$work/gpu1.gen').read().split(); d=[i for i in range(len(a)) if a[i]!=b[i]]; print('the same 32 tokens' if not d else 'the same first %d tokens' % d[0])")"
echo "fleet demo: recomputing gives $same_as_recompute" | tee -a "$out/fleet_demo.log"
if cmp -s "$work/gpu0.gen" "$work/gpu1.gen"; then
  echo "fleet demo: GPU 1 (history loaded from the node) and GPU 0 (continuing) decoded the same 32 tokens" | tee -a "$out/fleet_demo.log"
else
  echo "fleet demo: the tokens differ" | tee -a "$out/fleet_demo.log"
  paste "$work/gpu0.gen" "$work/gpu1.gen" | tee -a "$out/fleet_demo.log"
  exit 1
fi
