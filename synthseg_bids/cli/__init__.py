"""synthseg_bids.cli"""
