"""Interactive views: the notebook widget and the self-contained explorer page (its HTML in assets/)."""
