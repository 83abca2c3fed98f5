"""Output formats: one module per `report_configs.output_format`, behind `base.FormatWriter`."""
