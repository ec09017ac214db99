"""PASER's clustering (He et al. 2025, section 3.1; used by ``curation.steps.paser``): the diffusion-kernel
manifold of the instruction embeddings (or UMAP coordinates), NMF spectral clustering of |U U^T|, the
Nyström extension for pools larger than the kernel sample, and the card's 2-D map of the pool.
The deviations from the official code (symmetric eigenproblem, off-diagonal median bandwidth,
seeded NMF) are stated in ``curation.steps.paser``'s docstring.
"""

from __future__ import annotations

import numpy as np

from curation.steps.base import StepError

UMAP_MISSING = ("umap-learn is not installed: pip install 'recipe-kit[umap]' (or pip install umap-learn)")

# ---------------------------------------------------------------------- manifold and clusters
def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d2, 0.0)


def median_bandwidth(emb: np.ndarray) -> float:
    """sigma = the median off-diagonal pairwise distance (1.0 if every row is identical)."""
    d = np.sqrt(_sq_dists(emb, emb))
    iu = np.triu_indices(len(emb), k=1)
    sigma = float(np.median(d[iu])) if len(iu[0]) else 0.0
    return sigma if sigma > 1e-12 else 1.0


def diffusion_eigenvectors(emb: np.ndarray, k: int, sigma: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` eigenvectors of L = I - D^-1 K with the smallest eigenvalues (columns, unit norm) and
    the matching eigenvalues mu of P = D^-1 K (L's are 1 - mu), via D^-1/2 K D^-1/2 (symmetric)."""
    from scipy.sparse.linalg import eigsh

    kern = np.exp(-_sq_dists(emb, emb) / (2.0 * sigma ** 2))
    deg = kern.sum(1)
    s = 1.0 / np.sqrt(deg)
    sym = kern * s[:, None] * s[None, :]
    m = len(emb)
    if k < m - 1:
        v0 = np.random.default_rng(seed).standard_normal(m)
        mu, vecs = eigsh(sym, k=k, which="LA", v0=v0)
    else:  # ARPACK needs k < m - 1; a tiny pool takes the dense solver
        mu, vecs = np.linalg.eigh(sym)
        mu, vecs = mu[-k:], vecs[:, -k:]
    order = np.argsort(-mu, kind="stable")
    mu, vecs = mu[order], vecs[:, order]
    psi = vecs * s[:, None]  # right eigenvectors of P = D^-1 K, i.e. of the random-walk Laplacian
    psi /= np.maximum(np.linalg.norm(psi, axis=0, keepdims=True), 1e-12)
    signs = np.sign(psi[np.argmax(np.abs(psi), axis=0), np.arange(psi.shape[1])])  # a fixed sign per vector
    return psi * np.where(signs == 0, 1.0, signs), mu


def nystrom(emb_new: np.ndarray, emb_land: np.ndarray, psi: np.ndarray, mu: np.ndarray, sigma: float,
            block: int = 2048) -> np.ndarray:
    """Diffusion coordinates of rows outside the kernel sample: psi_j(x) = sum_i P(x, i) psi_j(i) / mu_j."""
    out = np.zeros((len(emb_new), psi.shape[1]))
    for a in range(0, len(emb_new), block):
        kern = np.exp(-_sq_dists(emb_new[a:a + block], emb_land) / (2.0 * sigma ** 2))
        p = kern / np.maximum(kern.sum(1, keepdims=True), 1e-300)
        out[a:a + block] = (p @ psi) / np.where(np.abs(mu) < 1e-6, 1e-6, mu)[None, :]
    return out


def nmf_clusters(coords_land: np.ndarray, coords_rest: np.ndarray | None, k: int, seed: int,
                 max_iter: int) -> tuple[np.ndarray, np.ndarray | None]:
    """NMF spectral clustering: S = |U U^T|, NMF(k, random init), cluster = argmax of W."""
    import warnings

    from sklearn.decomposition import NMF

    s = np.abs(coords_land @ coords_land.T)
    nmf = NMF(n_components=k, init="random", random_state=seed, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: argmax of W is what we use
        w = nmf.fit_transform(s)
        rest = None
        if coords_rest is not None and len(coords_rest):
            rest = np.argmax(nmf.transform(np.abs(coords_rest @ coords_land.T)), axis=1)
    return np.argmax(w, axis=1), rest


def relabel(assign: np.ndarray) -> np.ndarray:
    """Cluster ids 0..C-1 by size, largest first (ties: the first row's position): NMF's numbering
    is arbitrary, this one reads well in the card and is deterministic."""
    ids = np.unique(assign)
    sizes = {c: int((assign == c).sum()) for c in ids}
    first = {c: int(np.flatnonzero(assign == c)[0]) for c in ids}
    order = sorted(ids, key=lambda c: (-sizes[c], first[c]))
    mapping = {c: i for i, c in enumerate(order)}
    return np.array([mapping[c] for c in assign], dtype=np.int64)


def umap_coordinates(emb: np.ndarray, k: int, seed: int) -> np.ndarray:
    try:
        import umap
    except ImportError:
        raise StepError(f"paser: manifold: umap needs umap-learn, and {UMAP_MISSING}") from None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by setting random_state": seeded on purpose
        coords = umap.UMAP(n_components=max(2, min(k, len(emb) - 2)), n_neighbors=max(2, min(15, len(emb) - 1)),
                           random_state=seed).fit_transform(emb)
    coords = coords - coords.mean(0, keepdims=True)
    return coords / np.maximum(np.linalg.norm(coords, axis=0, keepdims=True), 1e-12)


def cluster_pool(emb: np.ndarray, k: int, manifold: str, seed: int, kernel_rows: int, max_iter: int) -> tuple[np.ndarray, dict]:
    """Cluster ids (0 = largest) for every row, and facts for the extras."""
    n = len(emb)
    emb = emb.astype(np.float64)
    rng = np.random.default_rng(seed)
    land = np.arange(n) if n <= kernel_rows else np.sort(rng.choice(n, kernel_rows, replace=False))
    rest = np.setdiff1d(np.arange(n), land)
    info: dict = {"kernel_rows": int(len(land)), "nystrom_rows": int(len(rest))}
    if k == 1:
        return np.zeros(n, dtype=np.int64), info
    if manifold == "diffusion":
        sigma = median_bandwidth(emb[land])
        psi, mu = diffusion_eigenvectors(emb[land], k, sigma, seed)
        coords_rest = nystrom(emb[rest], emb[land], psi, mu, sigma) if len(rest) else None
        info.update(sigma=sigma, laplacian_eigenvalues=[float(x) for x in (1.0 - mu)])
        coords_land = psi
    else:
        coords = umap_coordinates(emb, k, seed)
        coords_land, coords_rest = coords[land], (coords[rest] if len(rest) else None)
    a_land, a_rest = nmf_clusters(coords_land, coords_rest, k, seed, max_iter)
    assign = np.zeros(n, dtype=np.int64)
    assign[land] = a_land
    if a_rest is not None:
        assign[rest] = a_rest
    return relabel(assign), info


# ---------------------------------------------------------------------- the card's map
def map_2d(emb: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, str, str | None]:
    """2-D coordinates for the card: UMAP, or PCA (with a note) when umap-learn is missing."""
    note = None
    if method == "umap" and len(emb) >= 5:
        try:
            import warnings

            import umap

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                xy = umap.UMAP(n_components=2, n_neighbors=max(2, min(15, len(emb) - 1)), random_state=seed).fit_transform(emb)
            return np.asarray(xy), "umap", None
        except ImportError:
            note = f"PCA instead of UMAP: {UMAP_MISSING}"
    elif method == "umap":
        note = "PCA instead of UMAP: fewer than 5 rows"
    centred = emb - emb.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    if xy.shape[1] < 2:
        xy = np.hstack([xy, np.zeros((len(xy), 2 - xy.shape[1]))])
    return xy, "pca", note
