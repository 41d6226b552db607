"""An interactive explorer for Jupyter: keypoint, layer, head and map-kind selectors, and a click on the
image queries any position. Needs the notebook extra (`pip install "tpexplain[notebook]"`: ipywidgets, and
ipyevents for the clicks; without ipyevents the x/y sliders still move the query).

    from tpexplain.viz.widget import Explorer
    Explorer(model.explain("img.jpg"))       # the last expression of a cell shows it

The panels are composed with OpenCV rather than matplotlib, so a click answers in milliseconds.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..explanation import Explanation

GAP = 6          # pixels between panels
HEADER = 16      # pixels of label strip above each panel (before scaling)


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError:
        raise ImportError('the explorer widget needs ipywidgets: pip install "tpexplain[notebook]"') from None
    return ipywidgets


class Explorer:
    """Dependency (or affected-area) maps of one Explanation, every layer or one, driven by widgets."""

    def __init__(self, ex: Explanation, keypoint: str | None = None, scale: float = 1.5, alpha: float = 0.7):
        w = _ipywidgets()
        self.ex, self.scale, self.alpha = ex, scale, alpha
        h, wd = ex.input_size
        names = list(ex.keypoint_names)
        first = names[ex.keypoint(keypoint)] if keypoint is not None else names[0]
        self.point: tuple[float, float] | None = None      # a clicked crop point; None: the keypoint's own
        self.keypoint = w.Dropdown(options=[("(clicked point)", None)] + [(n, n) for n in names], value=first,
                                   description="keypoint")
        self.layer = w.Dropdown(options=[("all", None)] + [(str(i + 1), i) for i in range(ex.num_layers)],
                                value=None, description="layer")
        self.head = w.Dropdown(options=[("mean", None)] + [(str(i), i) for i in range(ex.num_heads)],
                               value=None, description="head")
        self.kind = w.ToggleButtons(options=["dependency", "affected"], value="dependency")
        self.x = w.FloatSlider(min=0, max=wd - 1, step=1, description="x", continuous_update=False)
        self.y = w.FloatSlider(min=0, max=h - 1, step=1, description="y", continuous_update=False)
        self.image = w.Image(format="png")
        self.info = w.HTML()
        self._busy = False
        for control in (self.layer, self.head, self.kind):
            control.observe(lambda _: self.render(), names="value")
        self.keypoint.observe(self._on_keypoint, names="value")
        self.x.observe(self._on_slider, names="value")
        self.y.observe(self._on_slider, names="value")
        self.events = self._click_events()
        note = "" if self.events else " (install ipyevents to click on the image; the sliders move the query)"
        self.help = w.HTML(f"<small>Click a panel to query any position{note}.</small>")
        self.widget = w.VBox([w.HBox([self.keypoint, self.layer, self.head]), w.HBox([self.kind, self.x, self.y]),
                              self.help, self.image, self.info])
        self._sync_sliders()
        self.render()

    # -- display
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)

    # -- queries
    def query_point(self, x: float, y: float) -> None:
        """Query the crop pixel (x, y), as a click does."""
        h, w = self.ex.input_size
        self.point = (float(np.clip(x, 0, w - 1)), float(np.clip(y, 0, h - 1)))
        self._busy = True
        try:
            self.keypoint.value = None
        finally:
            self._busy = False
        self._sync_sliders()
        self.render()

    def select(self, keypoint: str) -> None:
        self.keypoint.value = self.ex.keypoint_names[self.ex.keypoint(keypoint)]

    def click(self, event: dict) -> None:
        """An ipyevents click (image coordinates) → the crop point under it, whichever panel it is in."""
        px, py = float(event.get("dataX", event.get("relativeX", 0))), float(event.get("dataY", event.get("relativeY", 0)))
        h, w = self.ex.input_size
        pw = int(round(w * self.scale)) + GAP
        x = (px % pw) / self.scale
        y = (py - HEADER) / self.scale
        if 0 <= x < w and 0 <= y < h:
            self.query_point(x, y)

    def _click_events(self):
        try:
            from ipyevents import Event
        except ImportError:
            return None
        events = Event(source=self.image, watched_events=["click"], xy_coordinate_system="data")
        events.on_dom_event(self.click)
        return events

    def _on_keypoint(self, change) -> None:
        if self._busy:
            return
        if change["new"] is not None:
            self.point = None
            self._sync_sliders()
        elif self.point is None:
            self.point = self._query_xy()
        self.render()

    def _on_slider(self, _) -> None:
        if not self._busy:
            self.query_point(self.x.value, self.y.value)

    def _sync_sliders(self) -> None:
        # show the query on the sliders without their observers starting a query of their own
        x, y = self._query_xy()
        busy, self._busy = self._busy, True
        try:
            self.x.value, self.y.value = round(x), round(y)
        finally:
            self._busy = busy

    def _query_xy(self) -> tuple[float, float]:
        if self.point is not None:
            return self.point
        name = self.keypoint.value or self.ex.keypoint_names[0]
        k = self.ex.keypoint(name)
        return float(self.ex.keypoints_crop[k, 0]), float(self.ex.keypoints_crop[k, 1])

    # -- drawing
    def maps(self) -> list:
        """The AttentionMaps on show."""
        layers = range(self.ex.num_layers) if self.layer.value is None else [self.layer.value]
        if self.keypoint.value is not None:
            return [self.ex.attention_map(self.kind.value, self.keypoint.value, layer, self.head.value)
                    for layer in layers]
        return [self.ex.attention_map(self.kind.value, None, layer, self.head.value, point=self.point)
                for layer in layers]

    def render(self) -> None:
        maps = self.maps()
        self.image.value = self.png(maps)
        q = maps[0].query_crop
        token = self.ex.layout.token_at(*q)
        what = maps[0].keypoint or "point"
        head = "mean of heads" if self.head.value is None else f"head {self.head.value}"
        self.info.value = (f"<small>{what} at crop ({q[0]:.0f}, {q[1]:.0f}), token {token}; {self.kind.value}, "
                           f"{head}; each panel scaled to its own range</small>")

    def png(self, maps: list | None = None) -> bytes:
        """The panels as PNG bytes."""
        maps = self.maps() if maps is None else maps
        panels = [self._panel(m) for m in maps]
        gap = np.full((panels[0].shape[0], GAP, 3), 255, np.uint8)
        row = [p for panel in panels for p in (panel, gap)][:-1]
        ok, buf = cv2.imencode(".png", cv2.cvtColor(np.concatenate(row, axis=1), cv2.COLOR_RGB2BGR))
        return buf.tobytes()

    def _panel(self, m) -> np.ndarray:
        from matplotlib import colormaps

        from ..figures import CMAP
        ex = self.ex
        values = m.on_crop()
        lo, hi = float(values.min()), float(values.max())
        norm = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
        color = (colormaps[CMAP](norm)[..., :3] * 255).astype(np.float32)
        img = (ex.crop_image.astype(np.float32) * (1 - self.alpha) + color * self.alpha).astype(np.uint8)
        size = (int(round(img.shape[1] * self.scale)), int(round(img.shape[0] * self.scale)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
        s = self.scale
        kp = ex.keypoints_crop
        for a, b in ex.keypoint_set.skeleton:
            cv2.line(img, (int(kp[a, 0] * s), int(kp[a, 1] * s)), (int(kp[b, 0] * s), int(kp[b, 1] * s)),
                     (255, 255, 255), 1, cv2.LINE_AA)
        qx, qy = m.query_crop
        cv2.drawMarker(img, (int(qx * s), int(qy * s)), (0, 0, 0), cv2.MARKER_STAR, 16, 3, cv2.LINE_AA)
        cv2.drawMarker(img, (int(qx * s), int(qy * s)), (255, 255, 255), cv2.MARKER_STAR, 14, 1, cv2.LINE_AA)
        header = np.full((HEADER, img.shape[1], 3), 255, np.uint8)
        cv2.putText(header, f"layer {m.layer + 1}  max {hi:.3g}", (2, HEADER - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (40, 40, 40), 1, cv2.LINE_AA)
        return np.concatenate([header, img], axis=0)


def explorer(ex: Explanation, keypoint: str | None = None, scale: float = 1.5) -> Explorer:
    """The explorer widget for one Explanation."""
    return Explorer(ex, keypoint, scale)
