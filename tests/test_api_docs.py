"""The API reference builds: pdoc renders every jaxgan module, without a warning of jaxgan's own.

The documented command (README "API reference", docs/howto.md) is

    pdoc -d google --math -o docs/api jaxgan

and this test runs the same build through pdoc's Python API into a temporary
directory, with every warning recorded. A warning fails the test unless it is
one of `THIRD_PARTY_WARNINGS`: annotations written in a dependency that pdoc
cannot resolve, which no jaxgan docstring can fix.
"""

import re
import warnings

import pdoc
import pdoc.doc
import pdoc.extract
import pdoc.render

PDOC_OPTIONS = {"docformat": "google", "math": True}  # the -d google --math of the documented command

# Warnings about type annotations defined outside jaxgan (pdoc evaluates them in the wrong namespace).
THIRD_PARTY_WARNINGS = (
  # flax's TrainState.opt_state is optax.OptState = chex.ArrayTree, a recursive Union whose ForwardRef('ArrayTree')
  # resolves only inside chex; jaxgan.state.NetState inherits the field.
  re.compile(r"^Error parsing type annotation .*ForwardRef\('ArrayTree'\).* for "),
  # Maxout.bias_init defaults to jax.nn.initializers.zeros, whose signature names jax-internal types.
  re.compile(r"^Error parsing type annotation .* for jaxgan\.models\.layers\.Maxout\.bias_init\. "),
)

# Module page -> public names it must document.
MAIN_PAGES = {
  "jaxgan.losses": ("GANLoss", "GANOutputs", "register_loss", "get_loss", "non_saturating_generator_loss"),
  "jaxgan.regularizers": ("Penalty", "wgan_gp", "r1", "gradient_penalty", "clip_weights"),
  "jaxgan.update": ("update", "ema_update", "apply_network"),
  "jaxgan.steps": ("alternating_step", "AdversarialConfig", "finite_flag"),
  "jaxgan.state": ("GANState", "NetState", "create_gan_state"),
  "jaxgan.optimizers": ("learning_rate", "make_optimizer"),
  "jaxgan.trainer": ("fit", "TrainerConfig"),
  "jaxgan.parallel": ("compile_step", "make_data_mesh"),
  "jaxgan.checkpoint": (),
  "jaxgan.families.gan": ("Config", "init_state", "train_step", "d_update", "g_update", "sample"),
  "jaxgan.families.pix2pix": ("Config", "init_state", "train_step", "sample"),
  "jaxgan.families.cyclegan": ("Config", "init_state", "train_step", "sample", "ImagePool"),
  "jaxgan.models.mlp": ("MLPGenerator", "MaxoutDiscriminator"),
  "jaxgan.models.dcgan": ("DCGANGenerator", "DCGANDiscriminator"),
  "jaxgan.models.cgan": ("CGANMLPGenerator", "ProjectionDiscriminator"),
  "jaxgan.models.pix2pix": ("UNetGenerator", "PatchGANDiscriminator"),
  "jaxgan.models.cyclegan": ("ResNetGenerator",),
  "jaxgan.data.images": ("make_source", "make_iterator"),
  "jaxgan.evaluation": (),
  "jaxgan.metrics.inception": ("load_inception_weights",),
  "jaxgan.studies": ("parse_cell", "study_results", "results_markdown", "strip_plot"),
}


def _is_third_party(message: str) -> bool:
  return any(pattern.search(message) for pattern in THIRD_PARTY_WARNINGS)


def test_api_reference_builds_without_warnings(tmp_path):
  pdoc.render.configure(**PDOC_OPTIONS)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    pdoc.pdoc("jaxgan", output_directory=tmp_path)
  own = sorted({str(w.message) for w in caught if not _is_third_party(str(w.message))})
  assert not own, "pdoc warned:\n" + "\n".join(own)

  assert (tmp_path / "index.html").is_file() and (tmp_path / "search.js").is_file()
  for module, names in MAIN_PAGES.items():
    page = tmp_path.joinpath(*module.split(".")).with_suffix(".html")
    assert page.is_file(), f"no page for {module}"
    html = page.read_text()
    for name in names:
      assert f'id="{name}"' in html, f"{module}: {name} is not documented"

  # No page documents a class of a dependency as if it were jaxgan's (e.g. `Array = jax.Array`: @private).
  foreign = []
  for name in pdoc.extract.walk_specs(["jaxgan"]):
    module = pdoc.doc.Module.from_name(name)
    public = getattr(module.obj, "__all__", None)
    for member in module.members.values():
      shown = not member.name.startswith("_") if public is None else member.name in public
      if shown and "@private" not in member.docstring and member.kind == "class":
        if not member.taken_from[0].startswith("jaxgan"):
          foreign.append(f"{name}.{member.name} ({member.taken_from[0]})")
  assert not foreign, "classes of other packages in the API reference: " + ", ".join(foreign)
