"""synthseg_bids.workflows"""
