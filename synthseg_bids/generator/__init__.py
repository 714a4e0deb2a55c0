"""synthseg_bids.generator"""
