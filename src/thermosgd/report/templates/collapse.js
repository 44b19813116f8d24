// Interactive collapse plots: seed-mean curves (± one standard error) against
// rescaled time tau = t * (x / x_ref)^(sign * exponent), redrawn as the slider moves.
// Plain SVG, no library, so the page stays small and works offline.
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var W = 680, H = 380, M = { l: 72, r: 18, t: 14, b: 50 };

  function el(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) { e.setAttribute(k, attrs[k]); }
    if (parent) { parent.appendChild(e); }
    return e;
  }

  // Enough digits to tell neighbouring ticks apart (step = tick spacing).
  function fmtTick(v, step) {
    if (v === 0) { return "0"; }
    var a = Math.abs(v), e = Math.floor(Math.log10(a));
    var digits = Math.max(0, e - Math.floor(Math.log10(step || a)));
    if (a >= 1e4 || a < 1e-3) {
      return v.toExponential(Math.min(digits, 6)).replace(/\.?0+e/, "e").replace("e+", "e");
    }
    return String(+v.toPrecision(Math.min(digits + 1, 12)));
  }

  function linearTicks(lo, hi, n) {
    var span = hi - lo;
    if (!(span > 0)) { return [lo]; }
    var step = Math.pow(10, Math.floor(Math.log10(span / n)));
    var err = span / n / step;
    if (err >= 7.5) { step *= 10; } else if (err >= 3.5) { step *= 5; } else if (err >= 1.5) { step *= 2; }
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) { out.push(+v.toPrecision(12)); }
    return out;
  }

  function logTicks(lo, hi) {
    var a = Math.floor(Math.log10(lo)), b = Math.ceil(Math.log10(hi)), out = [];
    var mult = (b - a) <= 2 ? [1, 2, 5] : [1];
    for (var e = a; e <= b; e++) {
      for (var i = 0; i < mult.length; i++) {
        var v = mult[i] * Math.pow(10, e);
        if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) { out.push(v); }
      }
    }
    return out;
  }

  function Plot(fig) {
    this.fig = fig;
    this.d = JSON.parse(fig.querySelector("script.collapse-data").textContent);
    this.svg = fig.querySelector("svg.plot");
    this.slider = fig.querySelector("input.exponent");
    this.out = fig.querySelector("output.value");
    this.logx = fig.querySelector("input.logx");
    var self = this;
    this.slider.addEventListener("input", function () { self.draw(); });
    this.logx.addEventListener("change", function () { self.draw(); });
    var toPaper = fig.querySelector("button.to-paper"), toFitted = fig.querySelector("button.to-fitted");
    if (toPaper) { toPaper.addEventListener("click", function () { self.set(self.d.paper); }); }
    if (toFitted) { toFitted.addEventListener("click", function () { self.set(self.d.fitted); }); }
    this.marks();
    this.legend();
    this.draw();
  }

  Plot.prototype.set = function (v) { this.slider.value = v; this.draw(); };

  // Paper and fitted values (and the fitted CI) marked under the slider's track.
  Plot.prototype.marks = function () {
    var box = this.fig.querySelector(".marks"), d = this.d, lo = d.bounds[0], hi = d.bounds[1];
    // The thumb's centre travels from 8 px to width - 8 px (a 16 px thumb).
    function pos(v) { var f = (v - lo) / (hi - lo); return "calc(" + (100 * f) + "% + " + (8 - 16 * f) + "px)"; }
    if (d.ci && d.ci[0] !== null && d.ci[1] !== null) {
      var a = Math.max(lo, d.ci[0]), b = Math.min(hi, d.ci[1]);
      var ci = document.createElement("span");
      ci.className = "ci";
      ci.style.left = pos(a);
      ci.style.width = "calc(" + (100 * (b - a) / (hi - lo)) + "% - " + (16 * (b - a) / (hi - lo)) + "px)";
      ci.title = "95% CI of the fitted exponent";
      box.appendChild(ci);
    }
    var items = [[d.paper, "paper"]];
    if (d.fitted !== null) { items.push([d.fitted, "fitted"]); }
    items.forEach(function (it) {
      var s = document.createElement("span");
      s.className = "mk " + it[1];
      s.style.left = pos(it[0]);
      s.title = it[1] + " " + d.exponent_symbol + " = " + it[0];
      s.textContent = "▲";
      box.appendChild(s);
    });
  };

  Plot.prototype.legend = function () {
    var ul = this.fig.querySelector("ul.curves");
    this.d.curves.forEach(function (c) {
      var li = document.createElement("li"), sw = document.createElement("i");
      sw.style.background = c.color;
      li.appendChild(sw);
      li.appendChild(document.createTextNode(c.label + " (" + c.replicas + " replica" + (c.replicas === 1 ? "" : "s") + ")"));
      ul.appendChild(li);
    });
  };

  Plot.prototype.draw = function () {
    var d = this.d, a = parseFloat(this.slider.value), log = this.logx.checked, svg = this.svg;
    this.out.textContent = a.toFixed(2);
    var curves = d.curves.map(function (c) {
      var f = Math.pow(c.value / d.reference, d.sign * a);
      var pts = [];
      for (var i = 0; i < c.t.length; i++) {
        var x = c.t[i] * f;
        if (c.mean[i] === null || (log && !(x > 0))) { continue; }
        pts.push([x, c.mean[i], c.lo[i] === null ? c.mean[i] : c.lo[i], c.hi[i] === null ? c.mean[i] : c.hi[i]]);
      }
      return { c: c, pts: pts };
    });
    // Log axis: every curve's whole run. Linear axis: the reference run's span,
    // where the fit compares the curves (as in the static figures).
    var x0 = Infinity, x1 = -Infinity;
    if (log) {
      curves.forEach(function (k) { k.pts.forEach(function (p) { x0 = Math.min(x0, p[0]); x1 = Math.max(x1, p[0]); }); });
    } else { x0 = d.span[0]; x1 = d.span[1]; }
    if (!(x1 > x0)) { x1 = x0 + 1; }
    var y0 = Infinity, y1 = -Infinity;
    curves.forEach(function (k) {
      k.pts.forEach(function (p) { if (p[0] >= x0 && p[0] <= x1) { y0 = Math.min(y0, p[2]); y1 = Math.max(y1, p[3]); } });
    });
    if (!(y1 > y0)) { y0 -= 1; y1 += 1; }
    var pad = 0.05 * (y1 - y0); y0 -= pad; y1 += pad;
    var lx0 = Math.log10(x0), lx1 = Math.log10(x1);
    function X(x) {
      var f = log ? (Math.log10(x) - lx0) / (lx1 - lx0) : (x - x0) / (x1 - x0);
      return M.l + f * (W - M.l - M.r);
    }
    function Y(y) { return H - M.b - (y - y0) / (y1 - y0) * (H - M.t - M.b); }
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var clipId = this.fig.id + "-clip";
    var defs = el("defs", {}, svg), clip = el("clipPath", { id: clipId }, defs);
    el("rect", { x: M.l, y: M.t, width: W - M.l - M.r, height: H - M.t - M.b }, clip);
    var xt = log ? logTicks(x0, x1) : linearTicks(x0, x1, 6), yt = linearTicks(y0, y1, 5);
    xt.forEach(function (v) {
      el("line", { "class": "grid", x1: X(v), x2: X(v), y1: M.t, y2: H - M.b }, svg);
      el("text", { x: X(v), y: H - M.b + 16, "text-anchor": "middle", "class": "xtick" }, svg).textContent =
        fmtTick(v, log ? v : xt.length > 1 ? xt[1] - xt[0] : v);
    });
    yt.forEach(function (v) {
      el("line", { "class": "grid", x1: M.l, x2: W - M.r, y1: Y(v), y2: Y(v) }, svg);
      el("text", { x: M.l - 6, y: Y(v) + 4, "text-anchor": "end" }, svg).textContent =
        fmtTick(v, yt.length > 1 ? yt[1] - yt[0] : v);
    });
    el("rect", { "class": "axis", x: M.l, y: M.t, width: W - M.l - M.r, height: H - M.t - M.b, fill: "none" }, svg);
    var g = el("g", { "clip-path": "url(#" + clipId + ")" }, svg);
    curves.forEach(function (k) {
      if (k.pts.length < 1) { return; }
      var up = k.pts.map(function (p) { return X(p[0]).toFixed(1) + "," + Y(p[3]).toFixed(1); });
      var dn = k.pts.slice().reverse().map(function (p) { return X(p[0]).toFixed(1) + "," + Y(p[2]).toFixed(1); });
      el("polygon", { points: up.concat(dn).join(" "), fill: k.c.color, "fill-opacity": 0.22, stroke: "none" }, g);
      el("polyline", { points: k.pts.map(function (p) { return X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1); }).join(" "),
                       fill: "none", stroke: k.c.color, "stroke-width": 1.6 }, g);
    });
    var xl = el("text", { "class": "xlabel", x: (M.l + W - M.r) / 2, y: H - 10, "text-anchor": "middle" }, svg);
    var power = d.sign * a;
    xl.textContent = a === 0 ? "SGD iteration t" :
      "t · (" + d.symbol + "/" + d.reference + ")^" + (power < 0 ? "(" + power.toFixed(2) + ")" : power.toFixed(2)) +
      "   [iterations of the " + d.symbol + " = " + d.reference + " run" + (log ? ", log scale" : "") + "]";
    var yl = el("text", { x: 16, y: (M.t + H - M.b) / 2, "text-anchor": "middle",
                          transform: "rotate(-90 16 " + (M.t + H - M.b) / 2 + ")" }, svg);
    yl.textContent = d.metric_label;
    svg.setAttribute("data-xmin", x0);
    svg.setAttribute("data-xmax", x1);
    svg.setAttribute("data-exponent", a);
  };

  document.querySelectorAll("figure.collapse").forEach(function (fig) { fig.plot = new Plot(fig); });
})();
