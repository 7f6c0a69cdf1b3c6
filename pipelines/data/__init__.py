"""The data contract (videos, users, events), its readers and writers, and adapters that bring
real data sets to the contract. The synthetic world that makes the `synthetic` data set is
simulator/.
"""
