"""Scheduling: cron maths in the schedule's zone, the fire loop, claiming and misfire policy."""
