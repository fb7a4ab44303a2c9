from hf_vq.experiments.toys import figure3, figure10, path_summary


def test_figure3_alternated_and_synchronized_straighten_the_joint_spiral():
    paths = {k: path_summary(v) for k, v in figure3(steps=100).items()}
    assert paths["no_vq"]["path_length"] < 2.01  # straight line from (2, 0) to the origin
    # Figure 3: joint STE spirals; alternating and synchronizing shorten the detour
    assert paths["joint"]["path_length"] > paths["alternated"]["path_length"] > paths["synchronized"]["path_length"]
    assert all(s["final_distance"] < 0.05 for s in paths.values())


def test_figure10_affine_moves_every_code_and_aligns_the_codebook():
    standard, affine = figure10(None), figure10("learnable")
    assert standard["moved_fraction"] < 0.3 and affine["moved_fraction"] == 1.0
    assert affine["active_codes"] > standard["active_codes"]
    assert affine["divergence"] < standard["divergence"]


def test_figure10_rank1_embedding_defeats_the_diagonal_affine_not_the_full_moment_matching_one():
    # A line-shaped z_e (what small conv encoders collapse to): a diagonal scale cannot squeeze the 2-D code
    # cloud onto it, the full moment-matching W = Σ_e^½ Σ_c^−½ can; the isotropic case is the paper's figure.
    runs = {cov: figure10("ema", steps=20, embedding="rank1", covariance=cov) for cov in ("diagonal", "full")}
    assert runs["diagonal"]["active_codes"] < 0.25 and runs["full"]["active_codes"] > 0.8
    assert runs["full"]["divergence"] < 0.5 * runs["diagonal"]["divergence"]
    isotropic = {cov: figure10("ema", steps=20, covariance=cov) for cov in ("diagonal", "full")}
    assert min(r["active_codes"] for r in isotropic.values()) > 0.8
