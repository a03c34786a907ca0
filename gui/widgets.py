"""Widgets the panels share: a one-line label that elides, the red error label, the demo-file
picker, and the two-button question."""

from __future__ import annotations

from pathlib import Path

from PyQt6.QtCore import QSize, Qt, pyqtSignal
from PyQt6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from . import resources

ERROR_STYLE = "color: #c0392b;"
HINT_STYLE = "color: palette(mid);"
DEMO_FILTER = "HDF5 demo files (*.hdf5 *.h5);;All files (*)"


class ElidedLabel(QLabel):
    """One line of plain text, cut with "…" to the width the layout gives it (the whole text is
    then in the tooltip). Its height never depends on the text, so a long text cannot make a bar
    taller or push its neighbours away."""

    MIN_CHARS = 6  # the narrowest it gets: a few characters and the "…"

    def __init__(self, text: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self._full = ""
        self._tip: str | None = None
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setText(text)

    def setText(self, text: str | None, tooltip: str | None = None) -> None:  # noqa: N802 (Qt)
        """Show ``text``; the tooltip is ``tooltip``, or the whole text when it is cut."""
        self._full = text or ""
        self._tip = tooltip
        self.updateGeometry()
        self._render()

    def text(self) -> str:
        """The whole text (what is on screen may be cut: ``shown_text``)."""
        return self._full

    def shown_text(self) -> str:
        return super().text()

    def _render(self) -> None:
        width = self.contentsRect().width()
        shown = self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight, width)
        super().setText(shown)
        tip = self._tip if self._tip is not None else (self._full if shown != self._full else "")
        self.setToolTip(tip)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        self._render()

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        m = self.contentsMargins()
        width = self.fontMetrics().horizontalAdvance(self._full) + m.left() + m.right() + 2
        return QSize(width, self.fontMetrics().height() + m.top() + m.bottom())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        hint = self.sizeHint()
        narrow = self.fontMetrics().horizontalAdvance("x" * self.MIN_CHARS + "…")
        return QSize(min(hint.width(), narrow), hint.height())


class ErrorLabel(ElidedLabel):
    """Says in red what is wrong; empty when nothing is (call ``show_error("")`` once the cause is
    gone). ``wrap=True``: as many lines as the message needs, hidden while empty (a panel's own
    message). Otherwise one line that keeps its place and its height (a bar that must not jump).
    """

    def __init__(self, wrap: bool = False, parent: QWidget | None = None):
        self.wrap = wrap
        super().__init__("", parent)
        self.setStyleSheet(ERROR_STYLE)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        if wrap:
            self.setWordWrap(True)
            self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
            self.hide()

    def show_error(self, text: str) -> None:
        self.setText(text)
        if self.wrap:
            self.setVisible(bool(text))

    def _render(self) -> None:
        if self.wrap:
            QLabel.setText(self, self._full)
        else:
            super()._render()

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        return QLabel.sizeHint(self) if self.wrap else super().sizeHint()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        return QLabel.minimumSizeHint(self) if self.wrap else super().minimumSizeHint()


def ask(parent: QWidget, title: str, text: str, yes: str = "Yes", no: str = "No") -> bool:
    """Ask a question with two answers in a modal dialog; True for ``yes`` (tests replace this)."""
    box = QMessageBox(QMessageBox.Icon.Question, title, text, parent=parent)
    yes_button = box.addButton(yes, QMessageBox.ButtonRole.AcceptRole)
    no_button = box.addButton(no, QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(no_button)
    box.setEscapeButton(no_button)
    box.exec()
    return box.clickedButton() is yes_button


def describe_demo_file(path: str | Path) -> tuple[str, str]:
    """How a demo file is listed: its name with whose it is, and the hint that says where it is."""
    path = Path(path)
    if resources.is_shipped(path):
        return f"{path.name} (shipped)", f"Shipped with dp-agent, read-only: {path}"
    if resources.is_users(path):
        return f"{path.name} (yours)", f"Your file: {path}"
    return path.name, str(path)


class FilePicker(QWidget):
    """A list of demo files and a button that opens a file dialog. Each entry says whose file it
    is (shipped and read-only, or the user's own); the whole path is in its tooltip and in the
    hint under the list. ``chosen(path)`` fires when the user picks a file (list or dialog),
    never when the program sets one."""

    chosen = pyqtSignal(str)

    def __init__(
        self,
        button_text: str = "Open…",
        dialog_title: str = "Open demo file",
        save: bool = False,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.dialog_title = dialog_title
        self.save = save  # the dialog names a file to write (it need not exist)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        row = QHBoxLayout()
        self.combo = QComboBox()
        self.combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.combo.setMinimumContentsLength(12)
        self.combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.combo.activated.connect(self._activated)
        self.combo.currentIndexChanged.connect(lambda _: self._update_hint())
        self.button = QPushButton(button_text)
        self.button.clicked.connect(self._browse)
        row.addWidget(self.combo, 1)
        row.addWidget(self.button)
        layout.addLayout(row)
        self.hint = ElidedLabel()
        self.hint.setStyleSheet(HINT_STYLE)
        layout.addWidget(self.hint)
        self._update_hint()

    # ------------------------------------------------------------------ entries
    def _index(self, path: Path) -> int:
        for i in range(self.combo.count()):
            if Path(self.combo.itemData(i)) == path:
                return i
        return -1

    def add(self, path: str | Path, select: bool = True) -> None:
        """List ``path`` (once); ``select`` makes it the current entry."""
        path = Path(path)
        index = self._index(path)
        if index < 0:
            label, hint = describe_demo_file(path)
            self.combo.addItem(label, str(path))
            index = self.combo.count() - 1
            self.combo.setItemData(index, hint, Qt.ItemDataRole.ToolTipRole)
        if select:
            self.combo.setCurrentIndex(index)

    def remove(self, path: str | Path) -> None:
        index = self._index(Path(path))
        if index >= 0:
            self.combo.removeItem(index)

    def set_files(self, paths: list[Path], current: Path | None = None) -> None:
        """List exactly ``paths``, with ``current`` (if given) selected."""
        self.combo.blockSignals(True)
        self.combo.clear()
        for p in paths:
            self.add(p, select=False)
        if current is not None:
            self.add(current)
        self.combo.blockSignals(False)
        self._update_hint()

    def path(self) -> Path | None:
        data = self.combo.currentData()
        return Path(data) if data else None

    def files(self) -> list[Path]:
        return [Path(self.combo.itemData(i)) for i in range(self.combo.count())]

    # ------------------------------------------------------------------ user actions
    def _activated(self, index: int) -> None:
        data = self.combo.itemData(index)
        if data:
            self.chosen.emit(str(data))

    def _browse(self) -> None:
        current = self.path()
        start = str(current if self.save and current else current.parent if current else "")
        start = start or str(resources.app_home())
        if self.save:
            name, _ = QFileDialog.getSaveFileName(
                self,
                self.dialog_title,
                start,
                DEMO_FILTER,
                options=QFileDialog.Option.DontConfirmOverwrite,
            )
        else:
            name, _ = QFileDialog.getOpenFileName(self, self.dialog_title, start, DEMO_FILTER)
        if name:
            self.add(name)
            self.chosen.emit(name)

    def _update_hint(self) -> None:
        path = self.path()
        self.hint.setText(describe_demo_file(path)[1] if path else "No file yet")
