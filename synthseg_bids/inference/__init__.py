"""synthseg_bids.inference"""
