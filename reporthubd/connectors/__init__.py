"""Data sources: one module per `report_datasources.type`, behind `base.Connector`."""
