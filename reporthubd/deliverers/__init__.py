"""Deliveries: one module per `report_deliveries.method`, behind `base.Deliverer`."""
