"""synthseg_bids.training"""
