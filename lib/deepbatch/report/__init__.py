"""The run report: one page per run date with the data, the models and the predictions.

Stages build :class:`~deepbatch.report.page.Part` objects with the pure builders
(:mod:`.data`, :mod:`.model`, :mod:`.predictions`) and publish them with
:mod:`.publish`; :func:`~deepbatch.report.page.render_page` turns the parts into the page.
"""

from deepbatch.report.page import Part, render_page

__all__ = ["Part", "render_page"]
