# Declarations of the fused gate passes in rnn_math.h (see that file for what each one computes).
cdef extern from "rnn_math.h" nogil:
    void fr_lstm_fwd_f32(Py_ssize_t B, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                        float *gates, Py_ssize_t ldg,
                         const float *bias, const float *c_prev, float *c, float *h,
                         Py_ssize_t ldh)
    void fr_lstm_fwd_f64(Py_ssize_t B, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                        double *gates, Py_ssize_t ldg,
                         const double *bias, const double *c_prev, double *c, double *h,
                         Py_ssize_t ldh)
    void fr_gru_fwd_f32(Py_ssize_t B, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                        float *gates, const float *bias_x,
                        const float *hg, const float *b_hn, const float *h_prev, Py_ssize_t ldhp,
                        float *h, Py_ssize_t ldh, float *hn)
    void fr_gru_fwd_f64(Py_ssize_t B, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                        double *gates, const double *bias_x,
                        const double *hg, const double *b_hn, const double *h_prev,
                        Py_ssize_t ldhp, double *h, Py_ssize_t ldh, double *hn)
    void fr_gru_rz_f32(Py_ssize_t B, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                        float *gates, const float *bias_x,
                       const float *h_prev, Py_ssize_t ldhp, float *rh)
    void fr_gru_rz_f64(Py_ssize_t B, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                        double *gates, const double *bias_x,
                       const double *h_prev, Py_ssize_t ldhp, double *rh)
    void fr_gru_n_f32(Py_ssize_t B, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                        float *gates, const float *bias_x,
                      const float *h_prev, Py_ssize_t ldhp, float *h, Py_ssize_t ldh)
    void fr_gru_n_f64(Py_ssize_t B, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                        double *gates, const double *bias_x,
                      const double *h_prev, Py_ssize_t ldhp, double *h, Py_ssize_t ldh)
    void fr_lstm_bwd_f32(Py_ssize_t B, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                        float *gates, const float *c,
                         const float *c_prev, const float *dh, float *dc, float *r)
    void fr_gru_bwd_f32(Py_ssize_t B, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                        float *gates, float *hn,
                        const float *h_prev, Py_ssize_t ldhp, float *dh, float *dgh)
    void fr_gru_bwd1_f32(Py_ssize_t B, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                        float *gates, const float *h_prev,
                         Py_ssize_t ldhp, float *dh)
    void fr_gru_bwd2_f32(Py_ssize_t B, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                        float *gates, const float *h_prev,
                         Py_ssize_t ldhp, const float *drh, float *dh, float *rh)
    void fr_add_rows_f32(Py_ssize_t B, Py_ssize_t n, Py_ssize_t j0, Py_ssize_t j1,
                         float *dst, const float *src, Py_ssize_t lds)
    void fr_lstm_bwd_f64(Py_ssize_t B, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                        double *gates, const double *c,
                         const double *c_prev, const double *dh, double *dc, double *r)
    void fr_gru_bwd_f64(Py_ssize_t B, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                        double *gates, double *hn,
                        const double *h_prev, Py_ssize_t ldhp, double *dh, double *dgh)
    void fr_gru_bwd1_f64(Py_ssize_t B, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                        double *gates, const double *h_prev,
                         Py_ssize_t ldhp, double *dh)
    void fr_gru_bwd2_f64(Py_ssize_t B, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                        double *gates, const double *h_prev,
                         Py_ssize_t ldhp, const double *drh, double *dh, double *rh)
    void fr_add_rows_f64(Py_ssize_t B, Py_ssize_t n, Py_ssize_t j0, Py_ssize_t j1,
                         double *dst, const double *src, Py_ssize_t lds)
    void fr_activations_f32(Py_ssize_t n, const float *x, float *sig, float *th)
    void fr_activations_f64(Py_ssize_t n, const double *x, double *sig, double *th)
