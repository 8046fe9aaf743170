"""The live twin dashboard (Streamlit): overview, machines, alerts, history, scenarios, models."""
