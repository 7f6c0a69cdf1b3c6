"""The data contract (videos, users, events), its readers and writers, the synthetic world
and adapters that bring real data sets to the contract.
"""
