"""A small class for the similarity report's tests (tests/test_similarity.py).

Four students who wrote six graded functions of dcl_backprop each on their
own (ana, ben, chloe, dev: different loops, idioms and helpers, all correct
by the contract of book/contract.md), three disguised copies of them (gus of
ben, hana of chloe, oli of dev: names changed, cells and functions
reordered, reformatted, comments and docstrings changed, dead code added;
oli's code also holds text that would be markup in a page), two students
who pasted the reference, two who handed in the release notebook untouched
and one who answered a single line.
"""
import textwrap

AID = "dcl_backprop"
FUNCTIONS = ["sigmoid", "softmax_cross_entropy", "numerical_gradient", "momentum_step",
             "adam_step", "l2_penalty"]
HOSTILE = "</pre></code><script>alert('owned')</script><b>"


def _cells(text):
    """{function: source} of a block of top-level definitions, one per graded function
    (a helper written before a graded function goes into its cell)."""
    text = textwrap.dedent(text).strip("\n")
    found, pending = {}, None
    for block in ("\n" + text).split("\ndef ")[1:]:
        source = "def " + block.rstrip() + "\n"
        name = block.split("(", 1)[0]
        if name in FUNCTIONS:
            found[name] = (pending or "") + source
            pending = None
        else:
            pending = (pending or "") + source + "\n"
    return found


ANA = _cells('''
def sigmoid(z):
    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out

def softmax_cross_entropy(logits, y):
    n = logits.shape[0]
    shifted = logits - np.max(logits, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    loss = -np.mean(log_probs[np.arange(n), y])
    grad = np.exp(log_probs)
    grad[np.arange(n), y] -= 1
    return float(loss), grad / n

def numerical_gradient(f, x, eps=1e-6):
    g = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        keep = x[idx]
        x[idx] = keep + eps
        up = f()
        x[idx] = keep - eps
        down = f()
        x[idx] = keep
        g[idx] = (up - down) / (2 * eps)
    return g

def momentum_step(params, grads, state, lr, beta=0.9):
    velocity = {}
    new_params = {}
    for name in params:
        prev = state["v"][name] if "v" in state else np.zeros_like(params[name])
        velocity[name] = beta * prev + (1 - beta) * grads[name]
        new_params[name] = params[name] - lr * velocity[name]
    return new_params, {"v": velocity}

def adam_step(params, grads, state, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    t = state.get("t", 0) + 1
    m_new, v_new, out = {}, {}, {}
    for key, p in params.items():
        g = grads[key]
        m_prev = state["m"][key] if "m" in state else 0.0
        v_prev = state["v"][key] if "v" in state else 0.0
        m_new[key] = beta1 * m_prev + (1 - beta1) * g
        v_new[key] = beta2 * v_prev + (1 - beta2) * g * g
        m_hat = m_new[key] / (1 - beta1 ** t)
        v_hat = v_new[key] / (1 - beta2 ** t)
        out[key] = p - lr * (m_hat / (np.sqrt(v_hat) + eps) + weight_decay * p)
    return out, {"t": t, "m": m_new, "v": v_new}

def l2_penalty(params, lam):
    total = 0.0
    grads = {}
    for key, value in params.items():
        value = np.asarray(value, dtype=float)
        if key.startswith("W"):
            total += np.sum(value ** 2)
            grads[key] = lam * value
        else:
            grads[key] = np.zeros_like(value)
    return float(0.5 * lam * total), grads
''')

BEN = _cells('''
def sigmoid(z):
    z = np.asarray(z, dtype=np.float64)
    # e^(-|z|) is at most 1, so it never overflows
    small = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + small), small / (1.0 + small))

def softmax_cross_entropy(logits, y):
    batch = len(y)
    top = logits.max(axis=1)
    lse = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
    picked = logits[np.arange(batch), y]
    loss = np.sum(lse - picked) / batch
    probs = np.exp(logits - lse[:, None])
    onehot = np.zeros_like(probs)
    onehot[np.arange(batch), y] = 1.0
    return float(loss), (probs - onehot) / batch

def numerical_gradient(f, x, eps=1e-6):
    grad = np.empty(x.shape, dtype=np.float64)
    for flat in range(x.size):
        pos = np.unravel_index(flat, x.shape)
        saved = x[pos]
        x[pos] = saved + eps
        plus = f()
        x[pos] = saved - eps
        minus = f()
        grad[pos] = (plus - minus) / eps / 2
        x[pos] = saved
    return grad

def momentum_step(params, grads, state, lr, beta=0.9):
    old = state.get("v") or {k: 0.0 for k in params}
    v = {k: beta * old[k] + (1 - beta) * g for k, g in grads.items() if k in params}
    return {k: w - lr * v[k] for k, w in params.items()}, {"v": v}

def bias_corrected(avg, beta, step):
    return {k: a / (1 - beta ** step) for k, a in avg.items()}

def adam_step(params, grads, state, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    step = state["t"] + 1 if state else 1
    first = {k: (beta1 * state["m"][k] if state else 0) + (1 - beta1) * grads[k] for k in params}
    second = {k: (beta2 * state["v"][k] if state else 0) + (1 - beta2) * np.square(grads[k])
              for k in params}
    m_hat = bias_corrected(first, beta1, step)
    v_hat = bias_corrected(second, beta2, step)
    updated = {k: params[k] - lr * (m_hat[k] / (np.sqrt(v_hat[k]) + eps) + weight_decay * params[k])
               for k in params}
    return updated, {"t": step, "m": first, "v": second}

def l2_penalty(params, lam):
    weights = [k for k in params if k.startswith("W")]
    penalty = lam / 2 * sum(float(np.vdot(params[k], params[k])) for k in weights)
    grads = {k: lam * np.asarray(params[k], dtype=float) if k in weights
             else np.zeros_like(params[k], dtype=float) for k in params}
    return float(penalty), grads
''')

CHLOE = _cells('''
def sigmoid(z):
    z = np.asarray(z, dtype=np.float64)
    # log sigmoid(z) = -log(1 + e^-z) = -logaddexp(0, -z), finite for every z
    return np.exp(-np.logaddexp(0.0, -z))

def softmax_cross_entropy(logits, y):
    N, K = logits.shape
    Y = np.eye(K)[y]
    z = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1, keepdims=True))
    J = -np.einsum("nk,nk->", Y, z - log_norm) / N
    P = np.exp(z - log_norm)
    return float(J), (P - Y) / N

def numerical_gradient(f, x, eps=1e-6):
    result = np.zeros(x.shape)
    it = 0
    while it < x.size:
        where = np.unravel_index(it, x.shape)
        original = float(x[where])
        x[where] = original + eps
        hi = f()
        x[where] = original - eps
        lo = f()
        x[where] = original
        result[where] = 0.5 * (hi - lo) / eps
        it += 1
    return result

def momentum_step(params, grads, state, lr, beta=0.9):
    new_state = {"v": {}}
    result = {}
    for name, weight in params.items():
        previous = state.get("v", {}).get(name, np.zeros_like(weight))
        vel = previous * beta
        vel = vel + (1.0 - beta) * grads[name]
        new_state["v"][name] = vel
        result[name] = weight - vel * lr
    return result, new_state

def adam_step(params, grads, state, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    count = 1 + state.get("t", 0)
    means = dict(state.get("m", {}))
    variances = dict(state.get("v", {}))
    fresh = {}
    for name in params:
        gradient = grads[name]
        means[name] = beta1 * means.get(name, 0.0) + (1.0 - beta1) * gradient
        variances[name] = beta2 * variances.get(name, 0.0) + (1.0 - beta2) * gradient ** 2
        step = (means[name] / (1.0 - beta1 ** count)) / (
            np.sqrt(variances[name] / (1.0 - beta2 ** count)) + eps)
        fresh[name] = params[name] - lr * step - lr * weight_decay * params[name]
    return fresh, {"t": count, "m": means, "v": variances}

def l2_penalty(params, lam):
    pen = 0.0
    grad = {}
    for name in sorted(params):
        arr = np.array(params[name], dtype=np.float64)
        is_weight = name[:1] == "W"
        pen += (lam / 2.0) * float((arr * arr).sum()) if is_weight else 0.0
        grad[name] = lam * arr if is_weight else 0.0 * arr
    return pen, grad
''')

DEV = _cells('''
def sigmoid(z):
    arr = np.asarray(z, dtype=np.float64)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-arr))

def softmax_cross_entropy(logits, y):
    count = logits.shape[0]
    losses = []
    dl = np.zeros_like(logits, dtype=np.float64)
    for r in range(count):
        row = logits[r] - logits[r].max()
        total = np.exp(row).sum()
        losses.append(np.log(total) - row[y[r]])
        dl[r] = np.exp(row) / total
        dl[r, y[r]] -= 1.0
    return float(sum(losses) / count), dl / count

def numerical_gradient(f, x, eps=1e-6):
    def at(index, value):
        x[index] = value
        return f()
    g = np.zeros(x.shape, dtype=np.float64)
    for index in np.ndindex(*x.shape):
        base = x[index]
        g[index] = (at(index, base + eps) - at(index, base - eps)) / (2.0 * eps)
        x[index] = base
    return g

def momentum_step(params, grads, state, lr, beta=0.9):
    keys = list(params)
    prev = state["v"] if "v" in state else dict.fromkeys(keys, 0.0)
    vel = dict(zip(keys, (beta * prev[k] + (1 - beta) * grads[k] for k in keys)))
    moved = dict(zip(keys, (params[k] - lr * vel[k] for k in keys)))
    return moved, {"v": vel}

def adam_step(params, grads, state, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    def ema(old, new, beta):
        return {k: beta * old.get(k, 0.0) + (1 - beta) * new[k] for k in new}
    t = state.get("t", 0) + 1
    g = {k: grads[k] for k in params}
    m = ema(state.get("m", {}), g, beta1)
    v = ema(state.get("v", {}), {k: g[k] * g[k] for k in g}, beta2)
    bias1, bias2 = 1 - beta1 ** t, 1 - beta2 ** t
    new = {}
    for k in params:
        direction = (m[k] / bias1) / (np.sqrt(v[k] / bias2) + eps)
        new[k] = params[k] - lr * (direction + weight_decay * params[k])
    return new, {"t": t, "m": m, "v": v}

def l2_penalty(params, lam):
    def is_weight(name):
        return name.startswith("W")
    grads = {n: (lam if is_weight(n) else 0.0) * np.asarray(p, dtype=np.float64)
             for n, p in params.items()}
    value = sum(0.5 * lam * np.sum(np.square(p)) for n, p in params.items() if is_weight(n))
    return float(value), grads
''')

# ben's code: names changed, reformatted, comments and docstrings changed, dead code
# added, the helper renamed and moved after the function that uses it.
GUS = _cells('''
def sigmoid(z):
    """My sigmoid."""
    v = np.asarray(z, dtype = np.float64)
    tiny = np.exp( -np.abs(v) )   # between 0 and 1
    unused_flag = True
    return np.where(v >= 0,
                    1. / (1. + tiny),
                    tiny / (1. + tiny))

def softmax_cross_entropy(logits, y):
    """Cross entropy, averaged."""
    B = len(y)
    mx = logits.max(axis=1)
    log_sum = mx + np.log(
        np.exp(logits - mx[:, None]).sum(axis=1)
    )
    chosen = logits[np.arange(B), y]
    debug_values = []
    L = np.sum(log_sum - chosen) / B
    prob = np.exp(logits - log_sum[:, None])
    target = np.zeros_like(prob)
    target[np.arange(B), y] = 1.
    return float(L), (prob - target) / B

def numerical_gradient(f, x, eps=1e-6):
    # central differences, entry by entry
    out = np.empty(x.shape, dtype=np.float64)
    for i in range(x.size):
        loc = np.unravel_index(i, x.shape)
        orig = x[loc]
        x[loc] = orig + eps
        fp = f()
        x[loc] = orig - eps
        fm = f()
        out[loc] = (fp - fm) / eps / 2
        x[loc] = orig
    return out

def momentum_step(params, grads, state, lr, beta=0.9):
    previous = state.get("v") or {key: 0.0 for key in params}
    vel = {key: beta * previous[key] + (1 - beta) * gr
           for key, gr in grads.items() if key in params}
    if False:
        print("never")
    return {key: p - lr * vel[key] for key, p in params.items()}, {"v": vel}

def adam_step(params, grads, state, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    n = state["t"] + 1 if state else 1
    mom1 = {q: (beta1 * state["m"][q] if state else 0) + (1 - beta1) * grads[q] for q in params}
    mom2 = {q: (beta2 * state["v"][q] if state else 0) + (1 - beta2) * np.square(grads[q])
            for q in params}
    mh = unbias(mom1, beta1, n)
    vh = unbias(mom2, beta2, n)
    res = {q: params[q] - lr * (mh[q] / (np.sqrt(vh[q]) + eps) + weight_decay * params[q])
           for q in params}
    return res, {"t": n, "m": mom1, "v": mom2}

def unbias(avg, beta, step):
    # divide by 1 - beta^t
    return {q: a / (1 - beta ** step) for q, a in avg.items()}

def l2_penalty(params, lam):
    ws = [nm for nm in params if nm.startswith("W")]
    scratch = []
    tot = lam / 2 * sum(
        float(np.vdot(params[nm], params[nm]))
        for nm in ws)
    gr = {nm: lam * np.asarray(params[nm], dtype=float) if nm in ws
          else np.zeros_like(params[nm], dtype=float) for nm in params}
    return float(tot), gr
''')
# gus moved the helper after adam_step: it lands in l2_penalty's cell with _cells;
# put it back in adam_step's cell, after the function (reordered within the cell).
GUS["adam_step"] += "\n" + GUS["l2_penalty"].split("def l2_penalty", 1)[0].rstrip() + "\n"
GUS["l2_penalty"] = "def l2_penalty" + GUS["l2_penalty"].split("def l2_penalty", 1)[1]

HANA = _cells('''
def sigmoid(a):
    a = np.asarray(a, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -a))  # stable

def softmax_cross_entropy(logits, y):
    rows, classes = logits.shape
    onehot = np.eye(classes)[y]
    s = logits - logits.max(axis=1, keepdims=True)
    lognorm = np.log(np.exp(s).sum(axis=1, keepdims=True))
    cost = -np.einsum("nk,nk->", onehot, s - lognorm) / rows
    probs = np.exp(s - lognorm)
    return float(cost), (probs - onehot) / rows

def numerical_gradient(f, x, eps=1e-6):
    g = np.zeros(x.shape)
    counter = 0
    while counter < x.size:
        ix = np.unravel_index(counter, x.shape)
        keep = float(x[ix])
        x[ix] = keep + eps
        up = f()
        x[ix] = keep - eps
        down = f()
        x[ix] = keep
        g[ix] = 0.5 * (up - down) / eps
        counter += 1
    return g

def momentum_step(params, grads, state, lr, beta=0.9):
    st = {"v": {}}
    out = {}
    for n, w in params.items():
        before = state.get("v", {}).get(n, np.zeros_like(w))
        velocity = before * beta
        velocity = velocity + (1.0 - beta) * grads[n]
        st["v"][n] = velocity
        out[n] = w - velocity * lr
    return out, st

def adam_step(params, grads, state, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    tt = 1 + state.get("t", 0)
    m1 = dict(state.get("m", {}))
    m2 = dict(state.get("v", {}))
    nxt = {}
    for nm in params:
        gg = grads[nm]
        m1[nm] = beta1 * m1.get(nm, 0.0) + (1.0 - beta1) * gg
        m2[nm] = beta2 * m2.get(nm, 0.0) + (1.0 - beta2) * gg ** 2
        upd = (m1[nm] / (1.0 - beta1 ** tt)) / (np.sqrt(m2[nm] / (1.0 - beta2 ** tt)) + eps)
        nxt[nm] = params[nm] - lr * upd - lr * weight_decay * params[nm]
    return nxt, {"t": tt, "m": m1, "v": m2}

def l2_penalty(params, lam):
    p = 0.0
    d = {}
    for k in sorted(params):
        a = np.array(params[k], dtype=np.float64)
        w = k[:1] == "W"
        p += (lam / 2.0) * float((a * a).sum()) if w else 0.0
        d[k] = lam * a if w else 0.0 * a
    return p, d
''')

# dev's code, disguised, with text that is markup in a page (in a comment, a string and a name)
OLI = _cells(f'''
def sigmoid(z):
    t = np.asarray(z, dtype=np.float64)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-t))

def softmax_cross_entropy(logits, y):
    # {HOSTILE}
    c = logits.shape[0]
    parts = []
    grad = np.zeros_like(logits, dtype=np.float64)
    for i in range(c):
        rr = logits[i] - logits[i].max()
        tot = np.exp(rr).sum()
        parts.append(np.log(tot) - rr[y[i]])
        grad[i] = np.exp(rr) / tot
        grad[i, y[i]] -= 1.0
    label = "{HOSTILE}"
    return float(sum(parts) / c), grad / c

def numerical_gradient(f, x, eps=1e-6):
    def value_at(j, val):
        x[j] = val
        return f()
    out = np.zeros(x.shape, dtype=np.float64)
    for j in np.ndindex(*x.shape):
        b = x[j]
        out[j] = (value_at(j, b + eps) - value_at(j, b - eps)) / (2.0 * eps)
        x[j] = b
    return out

def momentum_step(params, grads, state, lr, beta=0.9):
    ks = list(params)
    pv = state["v"] if "v" in state else dict.fromkeys(ks, 0.0)
    vv = dict(zip(ks, (beta * pv[k] + (1 - beta) * grads[k] for k in ks)))
    mv = dict(zip(ks, (params[k] - lr * vv[k] for k in ks)))
    return mv, {{"v": vv}}

def adam_step(params, grads, state, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    def smooth(o, nw, b):
        return {{k: b * o.get(k, 0.0) + (1 - b) * nw[k] for k in nw}}
    step = state.get("t", 0) + 1
    gr = {{k: grads[k] for k in params}}
    first = smooth(state.get("m", {{}}), gr, beta1)
    second = smooth(state.get("v", {{}}), {{k: gr[k] * gr[k] for k in gr}}, beta2)
    c1, c2 = 1 - beta1 ** step, 1 - beta2 ** step
    res = {{}}
    for k in params:
        dirn = (first[k] / c1) / (np.sqrt(second[k] / c2) + eps)
        res[k] = params[k] - lr * (dirn + weight_decay * params[k])
    return res, {{"t": step, "m": first, "v": second}}

def l2_penalty(params, lam):
    def weightish(nm):
        return nm.startswith("W")
    g = {{n: (lam if weightish(n) else 0.0) * np.asarray(p, dtype=np.float64)
         for n, p in params.items()}}
    val = sum(0.5 * lam * np.sum(np.square(p)) for n, p in params.items() if weightish(n))
    return float(val), g
''')

INDEPENDENT = {"ana": ANA, "ben": BEN, "chloe": CHLOE, "dev": DEV}
COPIES = {"gus": ("ben", GUS), "hana": ("chloe", HANA), "oli": ("dev", OLI)}
