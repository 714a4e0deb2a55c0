"""synthseg_bids.network"""
