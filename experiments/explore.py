r"""Latent-space walks and vector arithmetic on a trained gan.py / dcgan.py run.

  python experiments/explore.py --workdir=/tmp/dcgan_digits

Rebuilds the model from the run's flags.json, restores its newest checkpoint
(jaxgan.checkpoint.Checkpointer) and samples with the EMA parameters when the
run kept them (BatchNorm statistics remeasured for them). Writes to
--workdir/explore/:

* interp_linear.png, interp_slerp.png -- one row per walk between two samples,
  --walk_steps images each, along the straight line and along the great circle
  (slerp, White 2016). Endpoints come from different classes when the data is
  labelled. A smooth walk without sudden jumps is the "no memorisation" check
  of Radford et al. (2015), Sec. 6.1.
* vector_arithmetic.png -- Radford et al.'s Fig. 7 procedure: the mean z of
  --group_size samples in each of three groups, z = mean z_A - mean z_B +
  mean z_C, then G(z) and G(z + u) for 8 draws u ~ U(-0.25, 0.25)^d.
* explore.json -- the numbers below.

The rule that forms the groups (digits have no labelled attributes, so the
attribute is computed): every one of --num_samples samples gets a class, the
label of its nearest real training image in pixel space (1-NN), and an "ink"
value, its mean pixel brightness in [0, 1]. With class a (--class_a, default the
most frequent generated class) and class b (--class_b, default the second):

    A = the group_size heaviest-ink samples of class a  ("thick a")
    B = the group_size lightest-ink samples of class a  ("thin a")
    C = the group_size lightest-ink samples of class b  ("thin b")

so A - B is a "stroke thickness" vector and A - B + C should be a thick b --
the analogue of "smiling woman - neutral woman + neutral man = smiling man".
explore.json reports the ink and the 1-NN classes of the nine result images
next to those of the control G(mean z_C + u) with the same u: the arithmetic
works when the ink rises and the class stays b. Unlabelled data uses the same
rule with a single class (A - B is then a brightness vector).
"""

from __future__ import annotations

import json
import os

import launch
import numpy as np
from absl import flags

from jaxgan import recipes, sampling, storage, viz
from jaxgan.errors import ConfigError
from jaxgan.recipes import images as image_recipe

flags.DEFINE_string("workdir", None, "Workdir of a finished (or checkpointed) gan.py / dcgan.py run.", required=True)
flags.DEFINE_integer("num_samples", 2000, "Samples to classify and choose the groups from.", lower_bound=50)
flags.DEFINE_integer("walks", 8, "Interpolation rows.", lower_bound=1)
flags.DEFINE_integer("walk_steps", 10, "Images per interpolation row (both ends included).", lower_bound=2)
flags.DEFINE_integer(
  "group_size", 3, "Samples averaged per group in the vector arithmetic (Radford: 3).", lower_bound=1
)
flags.DEFINE_integer("class_a", -1, "Class whose thick/thin samples give A and B (-1: most frequent).")
flags.DEFINE_integer("class_b", -1, "Class of C (-1: second most frequent).")
flags.DEFINE_float("noise", 0.25, "Half-width of the uniform perturbations of the result vector.", lower_bound=0.0)
flags.DEFINE_integer("seed", 0, "Seed of the samples drawn here.")

FLAGS = flags.FLAGS
_TAG = 0xE801


def ink(images: np.ndarray) -> np.ndarray:
  """Mean brightness of each image in [0, 1] (ink of a white-on-black digit)."""
  return ((images.reshape(len(images), -1) + 1.0) / 2.0).mean(axis=1)


def main(argv):
  del argv
  run = recipes.load_run(FLAGS.workdir)
  if run.kind != "image":
    raise ConfigError(
      f"{run.workdir} holds a {run.experiment} run: explore.py walks the latent space of gan.py / dcgan.py runs"
    )
  state, cfg, config = run.state, run.cfg, run.setup.config
  st = image_recipe.sampling_state(state, config, cfg["seed"])
  out_dir = os.path.join(os.path.abspath(FLAGS.workdir), "explore")
  rng = np.random.default_rng([FLAGS.seed, _TAG])

  z = sampling.latents(FLAGS.seed, _TAG, FLAGS.num_samples, config)
  samples = sampling.generate(st, z)
  source = run.setup.info["source"]
  real, labels = image_recipe.reference_images(source, min(2000, len(source)), cfg["seed"])
  if labels is not None:
    classes = image_recipe.nearest_neighbour_labels(samples, real, labels)
  else:
    classes = np.zeros(len(samples), np.int64)
  counts = np.bincount(classes, minlength=1 if labels is None else int(labels.max()) + 1)
  by_count = [int(c) for c in np.argsort(-counts, kind="stable")]
  results = {
    "step": int(state.step),
    "checkpoint_params": "ema" if st.ema_params is not None else "generator",
    "num_samples": FLAGS.num_samples,
    "nn_class_counts": counts.tolist(),
  }

  # ------------------------------------------------------------ interpolation
  present = [c for c in by_count if counts[c] > 0]
  ends = []
  for i in range(FLAGS.walks):
    if len(present) > 1:
      c0, c1 = present[(2 * i) % len(present)], present[(2 * i + 1) % len(present)]
      i0 = rng.choice(np.flatnonzero(classes == c0))
      i1 = rng.choice(np.flatnonzero(classes == c1))
    else:
      i0, i1 = rng.choice(len(z), 2, replace=False)
    ends.append((int(i0), int(i1)))
  row_labels = [f"{classes[a]}->{classes[b]}" for a, b in ends] if labels is not None else None
  z0, z1 = z[[a for a, _ in ends]], z[[b for _, b in ends]]
  results["interpolation"] = {}
  for method in ("linear", "slerp"):
    path_z = viz.interpolate_latents(z0, z1, FLAGS.walk_steps, method)
    images = sampling.generate(st, path_z.reshape(-1, path_z.shape[-1]))
    images = images.reshape(path_z.shape[:2] + images.shape[1:])
    viz.interpolation_strips(
      os.path.join(out_dir, f"interp_{method}.png"),
      images,
      row_labels=row_labels,
      title=f"{cfg['experiment']} {cfg['dataset']}\n{method} interpolation in z ({cfg['latent_dist']})",
      step=int(state.step),
      ema=st.ema_params is not None,
    )
    norms = np.linalg.norm(path_z, axis=-1)
    results["interpolation"][method] = {
      "mean_norm_ends": float(norms[:, [0, -1]].mean()),
      "mean_norm_midpoint": float(norms[:, FLAGS.walk_steps // 2].mean()),
    }

  # ------------------------------------------------------------ vector arithmetic
  if labels is not None:
    class_a = FLAGS.class_a if FLAGS.class_a >= 0 else by_count[0]
    class_b = FLAGS.class_b if FLAGS.class_b >= 0 else next(c for c in by_count if c != class_a)
  else:
    class_a = class_b = 0
  k = FLAGS.group_size
  in_a, in_b = np.flatnonzero(classes == class_a), np.flatnonzero(classes == class_b)
  if len(in_a) < 2 * k or len(in_b) < k:
    raise ConfigError(
      f"only {len(in_a)} samples of class {class_a} and {len(in_b)} of class {class_b} among "
      f"{FLAGS.num_samples}: raise --num_samples or choose --class_a/--class_b "
      f"(class counts {counts.tolist()})"
    )
  values = ink(samples)
  a_idx = in_a[np.argsort(-values[in_a], kind="stable")[:k]]
  b_idx = in_a[np.argsort(values[in_a], kind="stable")[:k]]
  c_idx = in_b[np.argsort(values[in_b], kind="stable")[:k]]
  means = [z[idx].mean(axis=0) for idx in (a_idx, b_idx, c_idx)]
  result = means[0] - means[1] + means[2]
  noise = rng.uniform(-FLAGS.noise, FLAGS.noise, (9, z.shape[1])).astype(np.float32)
  noise[0] = 0.0
  out = sampling.generate(st, (result[None] + noise).astype(np.float32))
  control = sampling.generate(st, (means[2][None] + noise).astype(np.float32))
  mean_images = sampling.generate(st, np.stack(means).astype(np.float32))
  names = (
    (f"thick {class_a}", f"thin {class_a}", f"thin {class_b}") if labels is not None else ("bright", "dark", "dark")
  )
  groups = [(name, samples[idx], mean_images[i]) for i, (name, idx) in enumerate(zip(names, (a_idx, b_idx, c_idx)))]
  expected = f"thick {class_b}?" if labels is not None else "bright?"
  viz.vector_arithmetic_figure(
    os.path.join(out_dir, "vector_arithmetic.png"),
    groups,
    out,
    result_label=expected,
    title=f"{cfg['experiment']} {cfg['dataset']}\nmean z ({k} samples each) "
    f"A - B + C, then +U(-{FLAGS.noise}, {FLAGS.noise}) noise",
    step=int(state.step),
    ema=st.ema_params is not None,
  )
  arith = {
    "rule": "A = heaviest-ink, B = lightest-ink samples of class_a; C = lightest-ink samples of class_b; "
    "classes by 1-NN to real images",
    "class_a": int(class_a),
    "class_b": int(class_b),
    "group_size": k,
    "ink_groups": [float(values[idx].mean()) for idx in (a_idx, b_idx, c_idx)],
    "ink_result": float(ink(out).mean()),
    "ink_control_c": float(ink(control).mean()),
  }
  if labels is not None:
    arith["result_classes"] = image_recipe.nearest_neighbour_labels(out, real, labels).tolist()
    arith["control_classes"] = image_recipe.nearest_neighbour_labels(control, real, labels).tolist()
  results["vector_arithmetic"] = arith
  storage.dump_json(os.path.join(out_dir, "explore.json"), results)
  print(json.dumps({"out_dir": out_dir, **arith}, default=str))


if __name__ == "__main__":
  launch.run(main)
